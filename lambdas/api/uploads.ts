/**
 * A training whose `instance_data` is one of our upload helper's serving URLs (lambdas/upload)
 * is checked when it is created: the file must be there and fit `limits.upload_max_bytes`.
 * Asked of the serving URL itself with a one-byte ranged GET: this also catches an expired URL,
 * and keeps the S3 client out of the api's cold start. (The trainer is given a URL of the same
 * key signed when the training leaves the queue: lambdas/shared/trainers/inputs.ts.)
 */
import type { BaseDeps } from '#shared/deps';
import { ApiError, badRequest } from '#shared/errors';
import type { Readable } from 'node:stream';
import { requestStream } from '#shared/http';
import { uploadKeyOf } from '#shared/uploads';

/** When `url` is one of our serving URLs, the uploaded object must exist and fit the cap. */
export async function checkUploaded(d: Pick<BaseDeps, 'config' | 'bucket'>, url: unknown): Promise<void> {
  if (typeof url !== 'string' || !uploadKeyOf(url, d.bucket)) return;
  let res;
  try {
    res = await requestStream(url, { method: 'GET', headers: { range: 'bytes=0-0' }, allow: d.config.egress.allow, timeoutMs: 10_000 });
  } catch (e) {
    // The storage, not the request, is at fault: a 503 to retry.
    throw new ApiError(503, `input.instance_data: the serving_url could not be reached (${(e as { code?: string }).code ?? 'network error'}); try again`);
  }
  // Only the headers matter (and an error's short XML): some S3-compatible servers send the
  // whole object for a one-byte range.
  const detail = res.status >= 400 ? await head(res.stream, 4096) : (res.stream.destroy(), '');
  // S3 answers 403 for a missing object when the signer may not list the bucket, 404 when it may.
  if (res.status === 403 && /Request has expired/i.test(detail)) {
    throw badRequest('input.instance_data: this serving_url has expired; ask POST /v1/upload/{filename} for a new one');
  }
  if (res.status === 403 || res.status === 404) {
    throw badRequest('input.instance_data: nothing was uploaded to this serving_url yet; PUT the zip to its upload_url first');
  }
  const size =
    res.status === 206 ? Number(/\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''))?.[1])
    : res.status === 200 ? Number(res.headers['content-length'])
    : res.status === 416 ? 0 // an empty object has no first byte
    : NaN;
  if (!Number.isFinite(size)) throw new ApiError(503, `input.instance_data: the serving_url answered ${res.status}; try again`);
  const max = d.config.limits.upload_max_bytes;
  if (size > max) throw badRequest(`input.instance_data: the uploaded file is ${size} bytes; limits.upload_max_bytes is ${max}`);
}

async function head(stream: Readable, max: number): Promise<string> {
  let text = '';
  for await (const chunk of stream) {
    text += String(chunk);
    if (text.length >= max) break;
  }
  stream.destroy();
  return text.slice(0, max);
}
