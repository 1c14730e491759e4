/**
 * Archives read through a random-access source (a local file, an S3 object), and zip checks
 * from the central directory only, so a multi-GB archive staged in S3 is checked with a few
 * ranged GETs and never downloaded twice. Entry data is not read here; byte counts are
 * enforced again when extracting.
 *
 * yauzl parses the central directory (including zip64). It is opened with
 * `decodeStrings: false` because its own name handling would turn backslashes into slashes
 * and reject bad names with messages of its own; names are decoded with its exported
 * `getFileNameLowLevel` in strict mode instead, so they read as an extractor using yauzl sees
 * them, and every refusal names the entry (the checks of each entry: ./archive-entries.ts).
 */
import { open, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ArchiveError, type ArchiveLimits, type ArchiveSummary, entryName, Tally } from './archive-entries.ts';
import { s3Stream } from './s3-stream.ts';

export { ArchiveError, type ArchiveLimits, type ArchiveSummary } from './archive-entries.ts';

export interface RandomAccessSource {
  size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * The bytes [offset, offset + length) front to back, for long sequential reads (an entry's
   * data). Optional: without it they are read as 8 MiB ranges.
   */
  stream?(offset: number, length: number): Readable;
}

/**
 * A local file as a source. No `stream`: read in 8 MiB ranges with read-ahead, a zip's entries
 * cost less CPU here than through a 64 KiB read stream (1.0 against 1.4 core-seconds for the
 * bench's 512 MiB, six runs each).
 */
export async function fileSource(path: string): Promise<RandomAccessSource> {
  const { size } = await stat(path);
  return {
    size,
    async read(offset, length) {
      const handle = await open(path, 'r');
      try {
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        return buffer.subarray(0, bytesRead);
      } finally {
        await handle.close();
      }
    },
  };
}

export interface S3SourceOptions {
  /** Bytes per GET of a long read (`stream`). @default 64 MiB */
  window?: number;
  /** Tries per window when a body breaks off. @default 3 */
  tries?: number;
}

/** An S3 object as a source: one ranged GetObject per read; long reads streamed. */
export function s3Source(s3: S3Client, bucket: string, key: string, size: number, options: S3SourceOptions = {}): RandomAccessSource {
  const object = { s3, bucket, key, window: options.window ?? STREAM_WINDOW, tries: options.tries ?? STREAM_TRIES };
  return {
    size,
    stream: (offset, length) => Readable.from(s3Stream(object, offset, length), { objectMode: false }),
    async read(offset, length) {
      if (length === 0) return Buffer.alloc(0);
      const res = await s3.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${offset}-${offset + length - 1}` }),
      );
      if (!res.Body) throw new Error(`s3://${bucket}/${key}: empty ranged read at ${offset}`);
      // Into one buffer of the range's size: collecting the body (transformToByteArray) and
      // wrapping it in a Buffer would copy every byte twice more.
      const out = Buffer.allocUnsafe(length);
      let at = 0;
      for await (const chunk of res.Body as AsyncIterable<Uint8Array>) {
        if (at + chunk.length > length) throw new Error(`s3://${bucket}/${key}: a ranged read at ${offset} answered more than ${length} bytes`);
        out.set(chunk, at);
        at += chunk.length;
      }
      if (at !== length) throw new Error(`s3://${bucket}/${key}: a ranged read at ${offset} answered ${at} of ${length} bytes`);
      return out;
    },
  };
}

const BLOCK = 1024 * 1024;
const STREAM_CHUNK = 8 * BLOCK;
const STREAM_WINDOW = 64 * BLOCK;
const STREAM_TRIES = 3;

/**
 * yauzl reads the central directory in tiny pieces (46 bytes, then each name); on S3 that
 * would be two GETs per entry. Aligned 1 MiB blocks, least recently used kept, make it a few.
 * The byte budget stops a forged directory from making us fetch the whole archive.
 */
function blockReader(source: RandomAccessSource, budget: number) {
  const cache = new Map<number, Promise<Buffer>>();
  let fetched = 0;
  const block = (index: number) => {
    let hit = cache.get(index);
    if (hit) cache.delete(index);
    else {
      const start = index * BLOCK;
      const length = Math.min(BLOCK, source.size - start);
      fetched += length;
      if (fetched > budget) throw new ArchiveError(`central directory is larger than ${budget} bytes`);
      hit = source.read(start, length);
      hit.catch(() => cache.delete(index));
    }
    cache.set(index, hit);
    if (cache.size > 4) cache.delete(cache.keys().next().value!);
    return hit;
  };
  return async (start: number, end: number): Promise<Buffer> => {
    const parts: Buffer[] = [];
    for (let i = Math.floor(start / BLOCK); i * BLOCK < end; i++) {
      const data = await block(i);
      parts.push(data.subarray(Math.max(0, start - i * BLOCK), Math.min(data.length, end - i * BLOCK)));
    }
    return Buffer.concat(parts);
  };
}

async function* chunks(source: RandomAccessSource, start: number, end: number): AsyncGenerator<Buffer> {
  for (let at = start; at < end; at += STREAM_CHUNK) yield await source.read(at, Math.min(STREAM_CHUNK, end - at));
}

async function* single(data: Promise<Buffer>): AsyncGenerator<Buffer> {
  yield await data;
}

/** Small reads (directory records) through the block cache; big ones (entry data) streamed in 8 MiB pieces. */
class SourceReader extends yauzl.RandomAccessReader {
  private readonly cached: (start: number, end: number) => Promise<Buffer>;

  constructor(
    private readonly source: RandomAccessSource,
    budget: number,
  ) {
    super();
    this.cached = blockReader(source, budget);
  }

  override _readStreamForRange(start: number, end: number): Readable {
    if (end - start > BLOCK && this.source.stream) return this.source.stream(start, end - start);
    if (end - start > BLOCK) return Readable.from(chunks(this.source, start, end), { objectMode: false });
    return Readable.from(single(this.cached(start, end)), { objectMode: false });
  }
}

/**
 * A yauzl reader over a source, for extracting an archive that `inspectArchive` accepted
 * (open it with `yauzl.fromRandomAccessReader(reader, source.size, …)`).
 */
export function yauzlReader(source: RandomAccessSource): yauzl.RandomAccessReader {
  return new SourceReader(source, Infinity);
}

/** Checks an archive's central directory against `limits`; throws ArchiveError naming the problem and entry. */
export async function inspectArchive(source: RandomAccessSource, limits: ArchiveLimits): Promise<ArchiveSummary> {
  if (source.size > limits.maxBytes) {
    throw new ArchiveError(`archive is ${source.size} bytes, more than the limit of ${limits.maxBytes}`);
  }
  // Tail (EOCD, zip64 records, comment) plus a generous 4 KiB per directory record.
  const budget = 128 * 1024 + limits.maxEntries * 4096 + BLOCK;
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromRandomAccessReaderPromise(new SourceReader(source, budget), source.size, {
      decodeStrings: false,
      validateEntrySizes: true,
    });
  } catch (err) {
    throw asArchiveError(err, 'is not a readable zip');
  }
  try {
    if (zip.entryCount > limits.maxEntries) {
      throw new ArchiveError(`archive has ${zip.entryCount} entries, more than the limit of ${limits.maxEntries}`);
    }
    const tally = new Tally(limits);
    for await (const entry of zip.eachEntry()) tally.add(entry);
    return tally.summary(source.size);
  } catch (err) {
    throw asArchiveError(err, 'has a corrupt central directory');
  } finally {
    zip.close();
  }
}

function asArchiveError(err: unknown, what: string): ArchiveError {
  if (err instanceof ArchiveError) return err;
  return new ArchiveError(`archive ${what}: ${(err as Error)?.message ?? String(err)}`);
}

/** The bytes of one (small) entry, read through the source's ranged reads; null when absent. */
export async function readEntry(source: RandomAccessSource, name: string, maxBytes: number): Promise<Buffer | null> {
  const zip = await yauzl.fromRandomAccessReaderPromise(new SourceReader(source, 4 * BLOCK), source.size, {
    decodeStrings: false,
    validateEntrySizes: true,
  });
  try {
    for await (const entry of zip.eachEntry()) {
      if (entryName(entry) !== name) continue;
      if (entry.uncompressedSize > maxBytes) throw new ArchiveError(`archive entry "${name}" is larger than ${maxBytes} bytes`);
      const stream = await zip.openReadStreamPromise(entry);
      const parts: Buffer[] = [];
      let size = 0;
      for await (const chunk of stream) {
        size += (chunk as Buffer).length;
        if (size > maxBytes) throw new ArchiveError(`archive entry "${name}" is larger than ${maxBytes} bytes`);
        parts.push(chunk as Buffer);
      }
      return Buffer.concat(parts);
    }
    return null;
  } finally {
    zip.close();
  }
}

/**
 * What a diffusers pipeline needs: every component `model_index.json` names with a library
 * (e.g. `"unet": ["diffusers", "UNet2DConditionModel"]`) must be a folder of the archive.
 */
export function missingComponents(modelIndex: unknown, topDirs: string[]): string[] {
  if (!modelIndex || typeof modelIndex !== 'object' || Array.isArray(modelIndex)) {
    throw new ArchiveError('model_index.json is not a JSON object');
  }
  const dirs = new Set(topDirs);
  return Object.entries(modelIndex as Record<string, unknown>)
    .filter(([key, v]) => !key.startsWith('_') && Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && v[0] !== '')
    .map(([key]) => key)
    .filter((component) => !dirs.has(component));
}
