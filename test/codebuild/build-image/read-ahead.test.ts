/** The build's read-ahead: the same bytes as direct reads, in any order, and failures surfaced. */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { RandomAccessSource } from '#shared/archive';
import { readAhead } from '#codebuild/build-image/read-ahead';

const DATA = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7) % 256));

function source(failAt?: number): RandomAccessSource & { reads: [number, number][] } {
  const reads: [number, number][] = [];
  return {
    size: DATA.length,
    reads,
    async read(offset, length) {
      reads.push([offset, length]);
      if (offset === failAt) throw new Error(`read at ${offset} failed`);
      return DATA.subarray(offset, offset + length);
    },
  };
}

describe('readAhead', () => {
  it('returns what direct reads return, sequentially and out of order', async () => {
    const src = source();
    const ra = readAhead(src, 2, 1000);
    const got: Buffer[] = [];
    for (let at = 0; at < DATA.length; at += 1500) got.push(await ra.read(at, Math.min(1500, DATA.length - at)));
    expect(Buffer.concat(got)).toEqual(DATA);
    expect(await ra.read(3000, 1200)).toEqual(DATA.subarray(3000, 4200));
    expect(await ra.read(17, 10)).toEqual(DATA.subarray(17, 27));
    // Sequential large reads were fetched ahead: the next range was asked for before it was needed.
    expect(src.reads.slice(0, 3)).toEqual([[0, 1500], [1500, 1500], [3000, 1500]]);
  });

  it('retries a failed speculative read directly and reports a failed direct read', async () => {
    const flaky = source(1500);
    let first = true;
    const once: RandomAccessSource = {
      size: flaky.size,
      read: (o, l) => (o === 1500 && first ? ((first = false), flaky.read(o, l)) : flaky.read(o === 1500 ? 0 : o, l).then(() => DATA.subarray(o, o + l))),
    };
    const ra = readAhead(once, 1, 1000);
    expect(await ra.read(0, 1500)).toEqual(DATA.subarray(0, 1500));
    expect(await ra.read(1500, 1500)).toEqual(DATA.subarray(1500, 3000));
    await expect(readAhead(source(0), 1, 1000).read(0, 1500)).rejects.toThrow('read at 0 failed');
  });

  it("hands a source's stream through: a stream reads ahead by itself", async () => {
    const streamed: RandomAccessSource = { ...source(), stream: (o, l) => Readable.from([DATA.subarray(o, o + l)]) };
    const ra = readAhead(streamed, 2, 1000);
    const got: Buffer[] = [];
    for await (const c of ra.stream!(10, 5000)) got.push(c as Buffer);
    expect(Buffer.concat(got)).toEqual(DATA.subarray(10, 5010));
    expect(readAhead(source(), 2, 1000).stream).toBeUndefined();
  });
});
