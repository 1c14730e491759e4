/**
 * A prediction as callers see it, each file output a presigned GET of OUTPUT_URL_SECONDS: the
 * api answers it and the webhook sends it. The URL acts with the signer's role (s3:GetObject on
 * the predictions prefix); it is never logged.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { fileRefsOf, type PredictionRecord, predictionView } from './record.ts';

/** As long as Replicate keeps its output URLs readable; a later read signs new ones. */
export const OUTPUT_URL_SECONDS = 60 * 60;

/** `s3` is asked for only when there are files to sign (the api makes its client on first use). */
export async function signedPredictionView(p: PredictionRecord, publicUrl: string, bucket: string, s3: () => Promise<S3Client> | S3Client) {
  const keys = p.status === 'succeeded' ? [...new Set(fileRefsOf(p.output))] : [];
  const urls = new Map<string, string>();
  if (keys.length > 0) {
    const client = await s3();
    // Loaded here, not at the top: the api's other routes start without the S3 SDK.
    const { GetObjectCommand, getSignedUrl } = await import('#shared/s3-sdk');
    for (const key of keys) urls.set(key, await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: OUTPUT_URL_SECONDS }));
  }
  return predictionView(p, publicUrl, urls);
}
