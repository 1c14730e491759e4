/**
 * Read-ahead for a random-access source read in sequence (an entry's data, in 8 MiB ranges):
 * while the tar layer consumes one range, the next ones are already on their way, so reading
 * S3 overlaps with hashing and pushing instead of alternating with them.
 */
import type { RandomAccessSource } from '#shared/archive';

interface Pending {
  offset: number;
  length: number;
  data: Promise<Buffer>;
}

/** Small reads (the central directory, headers) pass through; large ones fetch `depth` more ahead. */
export function readAhead(source: RandomAccessSource, depth = 2, minLength = 1024 * 1024): RandomAccessSource {
  let ahead: Pending[] = [];
  const fetch = (offset: number, length: number): Pending => {
    const data = source.read(offset, length);
    // A speculative read nobody asks for must not become an unhandled rejection.
    data.catch(() => undefined);
    return { offset, length, data };
  };
  return {
    size: source.size,
    // A stream reads ahead by itself.
    ...(source.stream ? { stream: source.stream.bind(source) } : {}),
    async read(offset, length) {
      if (length < minLength) return source.read(offset, length);
      const hit = ahead.find((p) => p.offset === offset && p.length >= length);
      ahead = ahead.filter((p) => p.offset > offset);
      const current = hit ?? fetch(offset, length);
      for (let next = ahead.at(-1) ? ahead.at(-1)!.offset + ahead.at(-1)!.length : offset + length; ahead.length < depth && next < source.size; ) {
        const p = fetch(next, Math.min(length, source.size - next));
        ahead.push(p);
        next += p.length;
      }
      // A failed speculative read is retried directly: the error may have been transient.
      const data = await current.data.catch((e) => (hit ? source.read(offset, length) : Promise.reject(e)));
      return data.length > length ? data.subarray(0, length) : data;
    },
  };
}
