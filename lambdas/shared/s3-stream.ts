/** Long reads of an S3 object (an entry's data, a whole layer), for s3Source in ./archive.ts. */
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';

export interface S3Object {
  s3: S3Client;
  bucket: string;
  key: string;
  /** Bytes per GET. */
  window: number;
  /** Tries per window when a body breaks off. */
  tries: number;
}

/** The object answered other bytes than the range asked for: not retried, it is not what it was. */
class RangeMismatch extends Error {}

/**
 * A long read as the response bodies' own chunks, passed straight on. Collecting each range
 * into a buffer of its own (as s3Source's `read` does) made a build allocate the whole archive again in
 * 8 MiB buffers that lived long enough to reach V8's old generation: on 2 cores the full GCs
 * they caused cost more than the reading itself (bench: build and push of 512 MiB from local
 * S3, 5.2 s → 3.4 s). One GET per window; the next window's GET is sent while this one
 * streams (its body waits, paused, in its socket), and a body that breaks off is asked again
 * from the byte where it stopped.
 */
export async function* s3Stream(o: S3Object, offset: number, length: number): AsyncGenerator<Buffer> {
  const uri = `s3://${o.bucket}/${o.key}`;
  const end = offset + length;
  const get = (from: number, to: number) => {
    const res = o.s3.send(new GetObjectCommand({ Bucket: o.bucket, Key: o.key, Range: `bytes=${from}-${to - 1}` }));
    res.catch(() => undefined);
    return res;
  };
  let ahead = offset < end ? get(offset, Math.min(end, offset + o.window)) : null;
  let body: Readable | null = null;
  try {
    for (let at = offset; at < end; ) {
      const to = Math.min(end, at + o.window);
      let response = ahead!;
      ahead = to < end ? get(to, Math.min(end, to + o.window)) : null;
      for (let attempt = 1; at < to; ) {
        let chunks: AsyncIterator<Buffer>;
        try {
          const res = await response;
          if (!res.Body) throw new RangeMismatch(`${uri}: empty ranged read at ${at}`);
          body = res.Body as Readable;
          chunks = body[Symbol.asyncIterator]();
        } catch (e) {
          if (e instanceof RangeMismatch || attempt >= o.tries || clientError(e)) throw e;
          attempt++;
          response = get(at, to);
          continue;
        }
        // The yield stays outside the try: an error the consumer throws in must not be retried.
        for (;;) {
          let next: IteratorResult<Buffer>;
          try {
            next = await chunks.next();
          } catch (e) {
            body.destroy();
            if (attempt >= o.tries) throw e;
            attempt++;
            response = get(at, to);
            break;
          }
          if (next.done) {
            if (at !== to) throw new RangeMismatch(`${uri}: a ranged read ended at byte ${at}, before ${to}`);
            break;
          }
          if (at + next.value.length > to) throw new RangeMismatch(`${uri}: a ranged read answered more than bytes ${at}-${to - 1}`);
          at += next.value.length;
          yield next.value;
        }
      }
    }
  } finally {
    // Ended early (the consumer stopped, or an error): no socket stays held by an unread body.
    body?.destroy();
    ahead?.then((r) => (r.Body as Readable | undefined)?.destroy(), () => undefined);
  }
}

const clientError = (e: unknown) => {
  const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0;
  return status >= 400 && status < 500;
};
