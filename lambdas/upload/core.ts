/**
 * The seed's upload helper: `POST /v1/upload/{filename}` → `{upload_url, serving_url}`, a
 * presigned PUT and GET of one object under `uploads/` (deleted after a day by the bucket's
 * lifecycle). The client PUTs its zip (Content-Type application/zip) and passes `serving_url`
 * as `instance_data`; the api checks it when the training is created (lambdas/api/uploads.ts),
 * and the trainer is given a URL signed afresh when the training leaves the queue (its input
 * keeps the key: lambdas/shared/uploads.ts).
 * Its own function: the only token route that needs S3, whose client would otherwise weigh on
 * every cold start of the api.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BaseDeps, Clients } from '#shared/deps';
import { badRequest } from '#shared/errors';
import { newUploadKey, SERVING_SECONDS, UPLOAD_NAME } from '#shared/uploads';

const UPLOAD_SECONDS = 15 * 60;

export type UploadDeps = Pick<BaseDeps, 'bucket'> & Pick<Clients, 's3'>;

export async function createUpload(d: UploadDeps, filename: string): Promise<{ upload_url: string; serving_url: string }> {
  if (!UPLOAD_NAME.test(filename)) {
    throw badRequest('filename: use a .zip file name of letters, digits, ".", "_" or "-" (at most 132 characters)');
  }
  const Key = newUploadKey(filename);
  const upload_url = await getSignedUrl(d.s3, new PutObjectCommand({ Bucket: d.bucket, Key, ContentType: 'application/zip' }), {
    expiresIn: UPLOAD_SECONDS,
  });
  const serving_url = await getSignedUrl(d.s3, new GetObjectCommand({ Bucket: d.bucket, Key }), { expiresIn: SERVING_SECONDS });
  return { upload_url, serving_url };
}
