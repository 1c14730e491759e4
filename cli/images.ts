/**
 * A folder of photos as the zip the trainer takes: only jpg, jpeg, png and webp; anything else
 * is refused before a byte is sent. Entries are stored, not deflated: these formats are
 * compressed already, and stored entries let yazl tell the archive's exact size up front, so
 * it streams straight into the upload (a presigned S3 PUT needs a Content-Length) with
 * constant memory and no temporary file.
 */
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import yazl from 'yazl';
import { UsageError } from './client.ts';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'];

export interface Archive {
  /** The name to upload under (`POST /v1/upload/{filename}`). */
  name: string;
  size: number;
  /** How many photos a zipped folder holds (unknown for a `.zip` sent as is). */
  images: number | null;
  /** The bytes, produced as they are read. */
  stream: Readable;
}

/** Hidden files (`.DS_Store`, `.git/`) are left out: a file manager's, not the person's. */
export function listImages(dir: string): string[] {
  const found: string[] = [];
  const refused: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith('.')) continue;
      const path = join(d, entry.name);
      const st = statSync(path); // follows symlinks: a linked photo is a photo
      if (st.isDirectory()) walk(path);
      else if (st.isFile() && IMAGE_EXTENSIONS.includes(extname(entry.name).toLowerCase())) found.push(path);
      else refused.push(relative(dir, path));
    }
  };
  walk(dir);
  if (refused.length) {
    const list = refused.slice(0, 5).join(', ') + (refused.length > 5 ? ` and ${refused.length - 5} more` : '');
    throw new UsageError(`${dir} holds files that are not photos: ${list}. Only ${IMAGE_EXTENSIONS.join(', ')} are sent; move the others out`);
  }
  if (found.length === 0) throw new UsageError(`${dir} holds no photos (${IMAGE_EXTENSIONS.join(', ')})`);
  return found;
}

/** The upload helper takes letters, digits, `.`, `_`, `-` and a `.zip` name. */
export function uploadName(path: string): string {
  const stem = basename(path).replace(/\.zip$/i, '').replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 100);
  return `${stem || 'photos'}.zip`;
}

export function zipFile(path: string): Archive {
  return { name: uploadName(path), size: statSync(path).size, images: null, stream: createReadStream(path) };
}

export function zipFolder(dir: string): Archive {
  const files = listImages(dir).map((path) => ({ path, size: statSync(path).size }));
  const zip = new yazl.ZipFile();
  for (const f of files) {
    // Names relative to the folder, with `/`; the trainer flattens them. Opened only when read.
    const name = relative(dir, f.path).split(sep).join('/');
    zip.addReadStreamLazy(name, { compress: false, size: f.size }, (cb) => cb(null, createReadStream(f.path)));
  }
  let size = -1;
  // With every entry stored and sized, yazl calls back during end() with the exact total.
  // (@types/yazl types the callback without its argument.)
  (zip as unknown as { end(o: undefined, cb: (total: number) => void): void }).end(undefined, (total) => (size = total));
  if (size < 0) throw new Error('yazl could not size the archive');
  return { name: uploadName(dir), size, images: files.length, stream: zip.outputStream as unknown as Readable };
}
