/**
 * The seed's upload helper's objects (lambdas/upload): `uploads/<32 hex>/<name>.zip` in the
 * bucket, served by a presigned GET (`serving_url`) that the client passes as `instance_data`.
 * A presigned URL lives no longer than the credentials that signed it, and a training may wait
 * in its trainer's queue for hours before the trainer downloads its input; so a training keeps
 * the URL its client sent (its `input` as sent), and the step that hands the input to the trainer
 * signs a fresh GET of the same key then (lambdas/shared/trainers/inputs.ts). No S3 client here:
 * the api recognizes these URLs too, and keeps the SDK out of its cold start.
 */
import { randomBytes } from 'node:crypto';

export const UPLOADS_PREFIX = 'uploads/';
/** How long a serving URL is signed for (at most: the signer's session may end sooner). */
export const SERVING_SECONDS = 60 * 60;
export const UPLOAD_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.zip$/;
const UPLOAD_KEY = /^uploads\/[0-9a-f]{32}\/[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.zip$/;

/** A new object key for an upload named `filename` (checked against UPLOAD_NAME first). */
export const newUploadKey = (filename: string) => `${UPLOADS_PREFIX}${randomBytes(16).toString('hex')}/${filename}`;

/**
 * The key of `url` when it is one of our serving URLs: the bucket's own path-style or
 * virtual-hosted address of an upload key, or null. Only the shape: whether the host is the
 * bucket's endpoint is for the signer to say (it knows the endpoint).
 */
export function uploadKeyOf(url: unknown, bucket: string): string | null {
  if (typeof url !== 'string' || !bucket) return null;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return null;
  let path: string;
  try {
    path = decodeURIComponent(u.pathname);
  } catch {
    return null;
  }
  const key = path.startsWith(`/${bucket}/`) ? path.slice(bucket.length + 2) : u.hostname.startsWith(`${bucket}.`) ? path.slice(1) : null;
  return key !== null && UPLOAD_KEY.test(key) ? key : null;
}
