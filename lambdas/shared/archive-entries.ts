/**
 * The checks every archive entry goes through, whatever the format (a zip's central directory
 * in ./archive.ts, a tar's headers in ./weights-format.ts): a name that extracts to itself and
 * stays inside, files and directories only, the declared sizes and expansion within the limits,
 * and the root files a pipeline needs.
 */
import yauzl from 'yauzl';

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

const MiB = 1024 * 1024;
const S_IFMT = 0o170000;
// biome-ignore lint/complexity/useSimpleNumberKeys: file-type bits read in octal, as in stat(2)
const FILE_TYPES: Record<number, string | null> = { 0: null, 0o100000: null, 0o040000: null, 0o120000: 'a symlink' };

/** Name of an entry as an extractor using yauzl sees it (UTF-8 flag, Info-ZIP unicode path, else CP437). */
export function entryName(entry: yauzl.Entry): string {
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
