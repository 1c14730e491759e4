/**
 * The weights a demo template server renders with, as one digest: the version's weights are
 * baked in at start (their digest, or the file or folder they are in), as a Cog image carries
 * its weights in /src/weights.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

export type WeightsSource = { digest: string } | { path: string };

/** `sha256:<hex>` of a file's bytes; of a folder's files by relative path and content; a given digest as it is. */
export async function weightsDigest(source: WeightsSource): Promise<string> {
  if ('digest' in source) {
    if (!source.digest.trim()) throw new Error('the weights digest is empty');
    return source.digest.trim();
  }
  if (!(await stat(source.path)).isDirectory()) return `sha256:${await fileSha256(source.path)}`;
  const files = (await readdir(source.path, { recursive: true, withFileTypes: true })).filter((d) => d.isFile());
  const listing = createHash('sha256');
  const lines = await Promise.all(
    files.map(async (d) => {
      const full = join(d.parentPath, d.name);
      return `${relative(source.path, full).split(sep).join('/')}\0${await fileSha256(full)}\n`;
    }),
  );
  for (const line of lines.sort()) listing.update(line);
  return `sha256:${listing.digest('hex')}`;
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
