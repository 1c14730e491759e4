/**
 * Zip checks from the central directory only, through a random-access source, so a multi-GB
 * archive staged in S3 is checked with a few ranged GETs and never downloaded twice. Entry
 * data is not read here; byte counts are enforced again when extracting.
 *
 * yauzl parses the central directory (including zip64). It is opened with
 * `decodeStrings: false` because its own name handling would turn backslashes into slashes
 * and reject bad names with messages of its own; names are decoded with its exported
 * `getFileNameLowLevel` in strict mode instead, so they read as an extractor using yauzl sees
 * them, and every refusal below names the entry.
 */
import { open, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';

export interface RandomAccessSource {
  size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * The bytes [offset, offset + length) front to back, for long sequential reads (an entry's
   * data). Optional: without it they are read as 8 MiB ranges.
   */
  stream?(offset: number, length: number): Readable;
}

export interface ArchiveLimits {
  /** Size of the archive itself. */
  maxBytes: number;
  maxEntries: number;
  /** Declared uncompressed size, per entry and in total. */
  maxUncompressedBytes: number;
  /** Declared uncompressed / compressed size, per entry (above 1 MiB) and in total. */
  maxRatio: number;
  /** Files that must sit at the root of the archive. @default ['model_index.json'] */
  requiredRootFiles?: string[];
}

export interface ArchiveSummary {
  entries: number;
  uncompressedBytes: number;
  /** Files at the root, sorted. */
  rootFiles: string[];
  /** Top-level directories, sorted. */
  topDirs: string[];
}

export class ArchiveError extends Error {
  override name = 'ArchiveError';
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

interface S3Object {
  s3: S3Client;
  bucket: string;
  key: string;
  window: number;
  tries: number;
}

/** The object answered other bytes than the range asked for: not retried, it is not what it was. */
class RangeMismatch extends Error {}

/**
 * A long read as the response bodies' own chunks, passed straight on. Collecting each range
 * into a buffer of its own (as `read` does) made a build allocate the whole archive again in
 * 8 MiB buffers that lived long enough to reach V8's old generation: on 2 cores the full GCs
 * they caused cost more than the reading itself (bench: build and push of 512 MiB from local
 * S3, 5.2 s → 3.4 s). One GET per window; the next window's GET is sent while this one
 * streams (its body waits, paused, in its socket), and a body that breaks off is asked again
 * from the byte where it stopped.
 */
async function* s3Stream(o: S3Object, offset: number, length: number): AsyncGenerator<Buffer> {
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

const MiB = 1024 * 1024;
const S_IFMT = 0o170000;
// biome-ignore lint/complexity/useSimpleNumberKeys: file-type bits read in octal, as in stat(2)
const FILE_TYPES: Record<number, string | null> = { 0: null, 0o100000: null, 0o040000: null, 0o120000: 'a symlink' };

/** Name of an entry as an extractor using yauzl sees it (UTF-8 flag, Info-ZIP unicode path, else CP437). */
function entryName(entry: yauzl.Entry): string {
  const raw = entry.fileName as unknown as Buffer;
  return yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, raw, entry.extraFields, true);
}

/** Why a name is unsafe to extract, or null. */
function unsafeName(name: string): string | null {
  if (name.length === 0) return 'has an empty name';
  if (name.includes('\0')) return 'has a NUL character in its name';
  if (name.includes('\\')) return 'has a backslash in its name (use / as the separator)';
  if (name.startsWith('/') || /^[a-zA-Z]:/.test(name)) return 'is an absolute path';
  const segments = name.split('/');
  if (segments.includes('..')) return 'has a ".." segment';
  // The build refuses what does not extract to its own spelling; refused here, before any build.
  if (segments.includes('.')) return 'is not a normalised path (a "." segment): archive the files relative to the root, without "./"';
  if (segments.slice(0, -1).includes('')) return 'is not a normalised path (an empty segment, "//")';
  return null;
}

const refuser = (name: string) => (why: string): never => {
  throw new ArchiveError(`archive entry ${JSON.stringify(name)} ${why}`);
};

/** Accumulates per-entry checks and the summary (zip entries by `add`, tar entries by `entry`). */
export class Tally {
  private count = 0;
  private uncompressed = 0;
  private readonly files = new Set<string>();
  private readonly dirs = new Set<string>();

  constructor(private readonly limits: ArchiveLimits) {}

  /** One zip entry: its type, encryption and compression, then the checks every format shares. */
  add(entry: yauzl.Entry): void {
    const name = entryName(entry);
    const refuse = refuser(name);
    const type = (entry.externalFileAttributes >>> 16) & S_IFMT;
    const kind = FILE_TYPES[type];
    const bad = unsafeName(name);
    if (bad) refuse(bad);
    if (kind === undefined) refuse(`is a special file (mode ${type.toString(8)}), not a file or directory`);
    if (kind) refuse(`is ${kind}; archives may hold only files and directories`);
    if (entry.isEncrypted()) refuse('is encrypted');
    if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
      refuse(`uses compression method ${entry.compressionMethod}; only stored (0) and deflate (8) are supported`);
    }
    this.entry(name, entry.uncompressedSize, entry.compressedSize);
  }

  /**
   * An entry whose type is already known to be a file or a directory (a name ending in `/`):
   * name, count and size checks. `compressedSize` is known for zip entries only.
   */
  entry(name: string, size: number, compressedSize?: number): void {
    const refuse = refuser(name);
    const bad = unsafeName(name);
    if (bad) refuse(bad);
    if (this.count >= this.limits.maxEntries) {
      throw new ArchiveError(`archive has more than ${this.limits.maxEntries} entries, the limit`);
    }
    this.checkSize(size, compressedSize, refuse);
    this.record(name, refuse);
  }

  private checkSize(size: number, compressedSize: number | undefined, refuse: (why: string) => never): void {
    const { maxUncompressedBytes, maxRatio } = this.limits;
    if (size > maxUncompressedBytes) {
      refuse(`declares ${size} bytes, more than the limit of ${maxUncompressedBytes}`);
    }
    if (compressedSize !== undefined && size > MiB && size > maxRatio * compressedSize) {
      refuse(`expands ${(size / Math.max(compressedSize, 1)).toFixed(0)}-fold, more than the limit of ${maxRatio}`);
    }
    this.uncompressed += size;
    if (this.uncompressed > maxUncompressedBytes) {
      refuse(`brings the declared total to ${this.uncompressed} bytes, more than the limit of ${maxUncompressedBytes}`);
    }
    this.count++;
  }

  private record(name: string, refuse: (why: string) => never): void {
    const path = name.replace(/\/$/, '');
    if (path === '') return;
    const isDir = name.endsWith('/');
    if (this.files.has(path) || (this.dirs.has(path) && !isDir)) refuse(`duplicates another entry (as ${path})`);
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join('/');
      if (this.files.has(parent)) refuse(`lies under ${parent}, which is a file`);
      this.dirs.add(parent);
    }
    if (isDir) this.dirs.add(path);
    else this.files.add(path);
  }

  summary(archiveBytes: number): ArchiveSummary {
    const { maxRatio, requiredRootFiles = ['model_index.json'] } = this.limits;
    if (this.uncompressed > MiB && this.uncompressed > maxRatio * archiveBytes) {
      throw new ArchiveError(`archive expands ${(this.uncompressed / archiveBytes).toFixed(0)}-fold, more than the limit of ${maxRatio}`);
    }
    const rootFiles = [...this.files].filter((f) => !f.includes('/')).sort();
    const topDirs = [...new Set([...this.dirs].map((d) => d.split('/')[0]))].sort();
    const missing = requiredRootFiles.filter((f) => !this.files.has(f));
    if (missing.length > 0) {
      const nested = topDirs.length === 1 && this.files.has(`${topDirs[0]}/${missing[0]}`);
      throw new ArchiveError(
        `archive has no ${missing.join(', ')} at its root` +
          (nested ? ` (it is under ${topDirs[0]}/: archive the directory's contents, not the directory)` : '') +
          '; the template loads a diffusers save_pretrained directory from the root (its weights setting is "diffusers")',
      );
    }
    return { entries: this.count, uncompressedBytes: this.uncompressed, rootFiles, topDirs };
  }
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
