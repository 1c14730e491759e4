/**
 * The seed's upload helper: `POST /v1/upload/{filename}` → `{upload_url, serving_url}`, a
 * presigned PUT and GET of one object under `uploads/` (deleted after a day by the bucket's
 * lifecycle). The client PUTs its zip (Content-Type application/zip) and passes `serving_url`
 * as `instance_data`; its size is checked when the training is created.
 */
import { randomBytes } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { Deps } from '#shared/deps';
import { badRequest } from '#shared/errors';

const UPLOAD_SECONDS = 15 * 60;
const SERVING_SECONDS = 60 * 60;

export async function createUpload(d: Deps<'s3'>, filename: string): Promise<{ upload_url: string; serving_url: string }> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.zip$/.test(filename)) {
    throw badRequest('filename: use a .zip file name of letters, digits, ".", "_" or "-" (at most 132 characters)');
  }
  const Key = `uploads/${randomBytes(16).toString('hex')}/${filename}`;
  // Loaded on first use: only this route presigns.
  const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');
  const upload_url = await getSignedUrl(d.s3, new PutObjectCommand({ Bucket: d.bucket, Key, ContentType: 'application/zip' }), {
    expiresIn: UPLOAD_SECONDS,
  });
  const serving_url = await getSignedUrl(d.s3, new GetObjectCommand({ Bucket: d.bucket, Key }), { expiresIn: SERVING_SECONDS });
  return { upload_url, serving_url };
}

/** When `url` is one of our serving URLs, the uploaded object must exist and fit the cap. */
export async function checkUploaded(d: Deps<'s3'>, url: unknown): Promise<void> {
  if (typeof url !== 'string') return;
  const key = uploadKey(url, d.bucket);
  if (!key) return;
  let size: number | undefined;
  try {
    size = (await d.s3.send(new HeadObjectCommand({ Bucket: d.bucket, Key: key }))).ContentLength;
  } catch {
    throw badRequest('input.instance_data: nothing was uploaded to this serving_url yet; PUT the zip to its upload_url first');
  }
  const max = d.config.limits.upload_max_bytes;
  if ((size ?? 0) > max) throw badRequest(`input.instance_data: the uploaded file is ${size} bytes; limits.upload_max_bytes is ${max}`);
}

function uploadKey(raw: string, bucket: string): string | null {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return null;
  }
  const path = decodeURIComponent(u.pathname);
  if (path.startsWith(`/${bucket}/uploads/`)) return path.slice(bucket.length + 2);
  if (u.hostname.startsWith(`${bucket}.`) && path.startsWith('/uploads/')) return path.slice(1);
  return null;
}
