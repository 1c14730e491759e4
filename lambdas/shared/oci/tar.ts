/**
 * The weights layer: an uncompressed tar produced as a stream, never staged on disk.
 * Headers are deterministic (mtime 0, uid/gid 0, 0644 files, 0755 directories, parents
 * listed before children) so the same weights give the same layer digest.
 */
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import yauzl from 'yauzl';
import { yauzlReader, type RandomAccessSource } from '#shared/archive';
import { tarStreamEntries } from '#shared/weights-format';

export interface TarEntry {
  /** Relative path below the prefix, `/`-separated. */
  path: string;
  size: number;
  stream: () => Readable | Promise<Readable>;
}

export interface ZipLimits {
  maxEntries?: number;
  /** Total bytes after decompression, counted as they flow. */
  maxBytes?: number;
}

export const DEFAULT_PREFIX = 'src/weights/';
const MTIME = new Date(0);

/** Thrown for archive or directory content that must not go into an image. */
export class UnsafeContentError extends Error {
  override name = 'UnsafeContentError';
}

/** A tar of `entries` under `prefix`; parent directories are added as needed. */
export function tarEntries(entries: Iterable<TarEntry> | AsyncIterable<TarEntry>, prefix = DEFAULT_PREFIX): Readable {
  const pack = tar.pack();
  const dirs = new Set<string>();
  const addDirs = async (path: string) => {
    const parts = path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/') + '/';
      if (dirs.has(dir)) continue;
      dirs.add(dir);
      await writeEntry(pack, { name: dir, type: 'directory', mode: 0o755 });
    }
  };
  (async () => {
    for await (const e of entries) {
      const name = prefix + safePath(e.path);
      await addDirs(name.endsWith('/') ? name + 'x' : name);
      if (!name.endsWith('/')) await writeEntry(pack, { name, type: 'file', mode: 0o644, size: e.size }, await e.stream());
    }
    await addDirs(prefix);
    pack.finalize();
  })().catch((err) => pack.destroy(err));
  // tar-stream yields a streamx stream; node's uploaders and hashing want a node Readable.
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}

/** A directory's regular files (sorted, recursively); symlinks and special files are refused. */
export function tarDirectory(dir: string, prefix = DEFAULT_PREFIX): Readable {
  return tarEntries(walk(dir, ''), prefix);
}

/**
 * A zip archive's entries straight into the tar, nothing unzipped to disk; `source` is a path or
 * a random-access source (an S3 object read by ranges). Sizes are counted as bytes flow, not
 * trusted from zip headers. Run `inspectArchive` first for the archive policy (limits, names).
 */
export function tarFromZip(source: string | RandomAccessSource, prefix = DEFAULT_PREFIX, limits: ZipLimits = {}): Readable {
  return tarEntries(zipEntries(source, limits), prefix);
}

/**
 * A trainer's tar (gzip when `gzip`) re-laid under `prefix`, streamed entry by entry: nothing on
 * disk, one entry's bytes in flight. Only files and directories pass; sizes are counted again.
 */
export function tarFromTar(stream: Readable, gzip: boolean, prefix = DEFAULT_PREFIX, limits: ZipLimits = {}): Readable {
  return tarEntries(tarArchiveEntries(stream, gzip, limits), prefix);
}

/** A single output file (a LoRA .safetensors, say) as `<prefix><name>`. */
export function tarFromFile(name: string, size: number, stream: () => Readable, prefix = DEFAULT_PREFIX): Readable {
  return tarEntries([{ path: name, size, stream }], prefix);
}

async function* tarArchiveEntries(stream: Readable, gzip: boolean, limits: ZipLimits): AsyncGenerator<TarEntry> {
  let entries = limits.maxEntries ?? Infinity;
  let budget = limits.maxBytes ?? Infinity;
  for await (const entry of tarStreamEntries(stream, gzip)) {
    const { name, type, size = 0 } = entry.header;
    if (--entries < 0) throw new UnsafeContentError(`archive has more than ${limits.maxEntries} entries`);
    if (type === 'directory') {
      entry.resume();
      yield { path: name.endsWith('/') ? name : `${name}/`, size: 0, stream: () => Readable.from([]) };
      continue;
    }
    if (type !== 'file' && type !== 'contiguous-file') throw new UnsafeContentError(`${name} is a ${type}, not a file or directory`);
    budget -= size;
    if (budget < 0) throw new UnsafeContentError(`archive expands beyond ${limits.maxBytes} bytes`);
    // tar-stream hands out a streamx stream; the layer writer reads a node Readable.
    yield { path: name, size, stream: () => Readable.from(entry as AsyncIterable<Buffer>, { objectMode: false }) };
  }
}

async function* walk(root: string, rel: string): AsyncGenerator<TarEntry> {
  const names = (await readdir(join(root, rel))).sort();
  if (rel) yield { path: rel + '/', size: 0, stream: () => Readable.from([]) };
  for (const name of names) {
    const path = rel ? `${rel}/${name}` : name;
    const st = await lstat(join(root, path));
    if (st.isDirectory()) yield* walk(root, path);
    else if (st.isFile()) yield { path, size: st.size, stream: () => createReadStream(join(root, path)) };
    else throw new UnsafeContentError(`${path} is not a regular file or directory`);
  }
}

async function* zipEntries(source: string | RandomAccessSource, limits: ZipLimits): AsyncGenerator<TarEntry> {
  const options = { lazyEntries: true, strictFileNames: true, validateEntrySizes: true };
  const zip = typeof source === 'string'
    ? await yauzl.openPromise(source, options)
    : await yauzl.fromRandomAccessReaderPromise(yauzlReader(source), source.size, options);
  const maxEntries = limits.maxEntries ?? Infinity;
  let budget = limits.maxBytes ?? Infinity;
  if (zip.entryCount > maxEntries) throw new UnsafeContentError(`archive has ${zip.entryCount} entries (limit ${maxEntries})`);
  try {
    for await (const entry of zip.eachEntry()) {
      const mode = (entry.externalFileAttributes >>> 16) & 0o170000;
      if (mode === 0o120000) throw new UnsafeContentError(`${entry.fileName} is a symlink`);
      if (entry.isEncrypted()) throw new UnsafeContentError(`${entry.fileName} is encrypted`);
      if (entry.fileName.endsWith('/')) {
        yield { path: entry.fileName, size: 0, stream: () => Readable.from([]) };
        continue;
      }
      budget -= entry.uncompressedSize;
      if (budget < 0) throw new UnsafeContentError(`archive expands beyond ${limits.maxBytes} bytes`);
      yield { path: entry.fileName, size: entry.uncompressedSize, stream: () => zip.openReadStreamPromise(entry) };
    }
  } finally {
    zip.close();
  }
}

function safePath(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  const normal = posix.normalize(trimmed);
  if (!trimmed || normal !== trimmed || normal.startsWith('/') || normal.split('/').includes('..') || normal === '.') {
    throw new UnsafeContentError(`unsafe path in weights: ${JSON.stringify(path)}`);
  }
  return path.endsWith('/') ? normal + '/' : normal;
}

type Header = { name: string; type: 'file' | 'directory'; mode: number; size?: number };

/** One tar entry; the body must have exactly `size` bytes, counted as they pass. */
function writeEntry(pack: tar.Pack, h: Header, body?: Readable): Promise<void> {
  const header = { ...h, size: h.size ?? 0, mtime: MTIME, uid: 0, gid: 0, uname: '', gname: '' };
  return new Promise<void>((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    // A failed entry destroys the pack, which hands the error to the layer's reader.
    sink.on('error', () => undefined);
    if (!body) return void sink.end(null);
    (async () => {
      let count = 0;
      for await (const chunk of body) {
        count += (chunk as Buffer).length;
        if (count > header.size) throw new UnsafeContentError(`${h.name} is longer than its declared ${header.size} bytes`);
        if (!sink.write(chunk)) await new Promise<void>((r) => sink.once('drain', () => r()));
      }
      if (count !== header.size) throw new UnsafeContentError(`${h.name} has ${count} bytes, not the declared ${header.size}`);
      sink.end(null);
    })().catch((err) => {
      body.destroy();
      sink.destroy(err);
      reject(err);
    });
  });
}
