/**
 * What a trainer is given of a training's input: the input as the client sent it, except that our
 * own upload helper's serving URLs are signed afresh, at the moment the input is handed over (a
 * URL signed at upload time may have died with its signer's credentials while the training
 * waited in the queue; see lambdas/shared/uploads.ts). The fresh URLs are never logged.
 */
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { SERVING_SECONDS, uploadKeyOf } from '#shared/uploads';

export async function inputForTrainer(d: { s3: S3Client; bucket: string }, input: Record<string, unknown>): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { ...input };
  for (const [field, value] of Object.entries(input)) {
    const key = uploadKeyOf(value, d.bucket);
    if (!key) continue;
    const fresh = await getSignedUrl(d.s3, new GetObjectCommand({ Bucket: d.bucket, Key: key }), { expiresIn: SERVING_SECONDS });
    // Only where the URL really is the bucket's own: the same endpoint as this client's signature.
    if (new URL(fresh).origin === new URL(value as string).origin) out[field] = fresh;
  }
  return out;
}
