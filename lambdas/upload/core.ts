/**
 * The seed's upload helper: `POST /v1/upload/{filename}` → `{upload_url, serving_url}`, a
 * presigned PUT and GET of one object under `uploads/` (deleted after a day by the bucket's
 * lifecycle). The client PUTs its zip (Content-Type application/zip) and passes `serving_url`
 * as `instance_data`; the api checks it when the training is created (lambdas/api/uploads.ts).
 * Its own function: the only token route that needs S3, whose client would otherwise weigh on
 * every cold start of the api.
 */
import { randomBytes } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BaseDeps, Clients } from '#shared/deps';
import { badRequest } from '#shared/errors';

const UPLOAD_SECONDS = 15 * 60;
const SERVING_SECONDS = 60 * 60;

export type UploadDeps = Pick<BaseDeps, 'bucket'> & Pick<Clients, 's3'>;

export async function createUpload(d: UploadDeps, filename: string): Promise<{ upload_url: string; serving_url: string }> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.zip$/.test(filename)) {
    throw badRequest('filename: use a .zip file name of letters, digits, ".", "_" or "-" (at most 132 characters)');
  }
  const Key = `uploads/${randomBytes(16).toString('hex')}/${filename}`;
  const upload_url = await getSignedUrl(d.s3, new PutObjectCommand({ Bucket: d.bucket, Key, ContentType: 'application/zip' }), {
    expiresIn: UPLOAD_SECONDS,
  });
  const serving_url = await getSignedUrl(d.s3, new GetObjectCommand({ Bucket: d.bucket, Key }), { expiresIn: SERVING_SECONDS });
  return { upload_url, serving_url };
}
