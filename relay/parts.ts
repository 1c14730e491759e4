/** A file's body cut into multipart-upload parts, each PUT to a URL the API presigns for it. */
import { RelayError, type UploadApi } from './upload-api.ts';

const PART_TIMEOUT_MS = 300_000;
const PART_ATTEMPTS = 3;

/** Cuts the body into parts; reading waits while `concurrency` parts are on their way. */
export async function sendParts(api: UploadApi, uploadId: string, body: AsyncIterable<Buffer>, partSize: number, concurrency: number) {
  const done: { n: number; etag: string }[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: Error | undefined;
  let buffered: Buffer[] = [];
  let size = 0;
  let n = 0;

  const send = async (data: Buffer) => {
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    if (failure) throw failure;
    const part = ++n;
    const p = sendPart(api, uploadId, part, data).then(
      (etag) => void done.push({ n: part, etag }),
      (e: Error) => void (failure ??= e),
    );
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const take = (bytes: number) => {
    const all = Buffer.concat(buffered, size);
    buffered = all.length > bytes ? [all.subarray(bytes)] : [];
    size = all.length - bytes;
    return all.subarray(0, bytes);
  };

  for await (const chunk of body) {
    buffered.push(chunk);
    size += chunk.length;
    while (size >= partSize) await send(take(partSize));
  }
  // An empty file is one empty part: S3 completes no upload without parts.
  if (size > 0 || n === 0) await send(take(size));
  await Promise.all(inFlight);
  if (failure) throw failure;
  return done.sort((a, b) => a.n - b.n);
}

async function sendPart(api: UploadApi, uploadId: string, n: number, data: Buffer): Promise<string> {
  let last: Error | undefined;
  for (let attempt = 1; attempt <= PART_ATTEMPTS; attempt++) {
    // A fresh URL each attempt: they are short-lived.
    const { url } = await api.call<{ url: string }>(`/${uploadId}/parts/${n}`, {});
    try {
      const res = await fetch(url, { method: 'PUT', body: data, signal: AbortSignal.timeout(PART_TIMEOUT_MS) });
      await res.arrayBuffer();
      const etag = res.headers.get('etag');
      if (res.ok && etag) return etag;
      last = new RelayError(`S3 answered ${res.status} to part ${n}`);
      if (res.status < 500) break;
    } catch (e) {
      last = new RelayError(`part ${n} could not be sent: ${(e as Error).message}`);
    }
  }
  throw last!;
}
