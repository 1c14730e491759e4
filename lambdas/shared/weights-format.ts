/**
 * Trainer outputs as they come: the seed's output.zip, a tar (plain or gzip, as Replicate's
 * current fine-tuners return `trained_model.tar`), or a single file (a LoRA `.safetensors`),
 * which goes into /src/weights under its own name.
 *
 * The format is read from the first bytes of the staged object, never trusted from the name;
 * a name that promises an archive the bytes are not is refused rather than kept as a file.
 * A tar has no central directory, so it is checked by reading it once, streamed (constant
 * memory): every header through the same Tally as a zip's entries, entry data skipped.
 */
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { ArchiveError, Tally, type ArchiveLimits, type ArchiveSummary } from './archive-entries.ts';

export const WEIGHTS_FORMATS = ['zip', 'tar', 'tar.gz', 'file'] as const;
export type WeightsFormat = (typeof WEIGHTS_FORMATS)[number];

/** Bytes needed to tell the formats apart (a tar's `ustar` magic sits at offset 257). */
export const SNIFF_BYTES = 512;

const ARCHIVE_NAMES: [RegExp, WeightsFormat][] = [
  [/\.zip$/i, 'zip'],
  [/\.(tar\.gz|tgz)$/i, 'tar.gz'],
  [/\.tar$/i, 'tar'],
];

/** The format of a staged output from its first bytes; `name` is what it is called (the staged key's last segment). */
export function sniffFormat(head: Buffer, name: string): WeightsFormat {
  const format = magic(head);
  const promised = ARCHIVE_NAMES.find(([re]) => re.test(name))?.[1];
  // A .tar.gz named .tar (or the reverse) is still a tar; a "zip" that is not one is a broken output.
  const family = (f: WeightsFormat | undefined) => (f === 'tar.gz' ? 'tar' : f);
  if (promised && family(promised) !== family(format)) {
    throw new ArchiveError(`the output is named ${name} but is ${format === 'file' ? 'not a readable archive' : `a ${format}`}`);
  }
  return format;
}

function magic(head: Buffer): WeightsFormat {
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && [0x0304, 0x0506, 0x0708].includes(head.readUInt16BE(2))) return 'zip';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'tar.gz';
  // POSIX "ustar\0" and GNU "ustar  \0".
  if (head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar') return 'tar';
  return 'file';
}

/**
 * The name an output is staged (and, as a single file, installed) under: the last segment of
 * its URL when that is a plain file name, else `weights`. Derived from the URL alone, so a
 * retried staging finds the object it staged before.
 */
export function outputFileName(url: string): string {
  let last = '';
  try {
    last = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
  } catch {
    /* not a URL we can read a name from */
  }
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(last) ? last : 'weights';
}

/** The Content-Type a staged output is stored (and later downloaded) with, from its name. */
export function contentTypeFor(name: string): string {
  if (/\.zip$/i.test(name)) return 'application/zip';
  if (/\.tar$/i.test(name)) return 'application/x-tar';
  if (/\.(tar\.gz|tgz|gz)$/i.test(name)) return 'application/gzip';
  return 'application/octet-stream';
}

export interface TarInspection extends ArchiveSummary {
  /** Contents of the root files asked for (each at most 1 MiB), e.g. model_index.json. */
  files: Map<string, Buffer>;
}

const TYPES_ALLOWED = new Set(['file', 'contiguous-file', 'directory']);
const KEEP_MAX = 1024 * 1024;

/** Tar entries as tar-stream parses them (pax and GNU long names already applied). */
export async function* tarStreamEntries(stream: Readable, gzip: boolean) {
  const { extract } = await import('tar-stream');
  const ex = extract();
  const input = gzip ? stream.pipe(createGunzip()) : stream;
  const fail = (e: Error) => ex.destroy(e);
  stream.on('error', fail);
  input.on('error', fail);
  input.pipe(ex);
  try {
    for await (const entry of ex) yield entry;
  } finally {
    stream.destroy();
  }
}

/**
 * Checks a tar (gzip when `gzip`) against `limits` as it streams past: names, types (files and
 * directories only), entry count, declared sizes, and for a gzip the expansion ratio over
 * `archiveBytes`. Throws ArchiveError naming the entry.
 */
export async function inspectTar(stream: Readable, gzip: boolean, archiveBytes: number, limits: ArchiveLimits, keep: string[] = []): Promise<TarInspection> {
  const tally = new Tally(limits);
  const files = new Map<string, Buffer>();
  try {
    for await (const entry of tarStreamEntries(stream, gzip)) {
      const { name, type, size = 0 } = entry.header;
      if (!TYPES_ALLOWED.has(type ?? 'file')) {
        throw new ArchiveError(`archive entry ${JSON.stringify(name)} is a ${type}; archives may hold only files and directories`);
      }
      const dir = type === 'directory';
      tally.entry(dir && !name.endsWith('/') ? `${name}/` : name, dir ? 0 : size);
      if (keep.includes(name) && size <= KEEP_MAX) files.set(name, await collect(entry as AsyncIterable<Buffer>));
      else entry.resume();
    }
  } catch (e) {
    if (e instanceof ArchiveError) throw e;
    throw new ArchiveError(`archive is not a readable tar${gzip ? '.gz' : ''}: ${(e as Error).message}`);
  }
  // A plain tar is as large as its contents: only a gzip can expand beyond the ratio.
  return { ...tally.summary(gzip ? archiveBytes : Infinity), files };
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c);
  return Buffer.concat(parts);
}
