import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { fileSource } from '#shared/archive';
import { tarDirectory, tarEntries, tarFromZip } from '#shared/oci/tar';
import { listTar } from '#test-helpers/registry';

const digest = async (s: Readable) => {
  const h = createHash('sha256');
  for await (const c of s) h.update(c as Buffer);
  return h.digest('hex');
};

async function writeZip(path: string, add: (zip: yazl.ZipFile) => void) {
  const zip = new yazl.ZipFile();
  add(zip);
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(path));
}

describe('weights tar', () => {
  let root: string;
  let weights: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'tar-'));
    weights = join(root, 'weights');
    await mkdir(join(weights, 'unet'), { recursive: true });
    await mkdir(join(weights, 'scheduler'));
    await writeFile(join(weights, 'model_index.json'), '{"a": 1}');
    await writeFile(join(weights, 'unet', 'x.bin'), Buffer.alloc(5000, 3));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('lists a directory under src/weights/ with parents first and fixed headers', async () => {
    const entries = await listTar(tarDirectory(weights));
    expect(entries.map((e) => e.name)).toEqual([
      'src/',
      'src/weights/',
      'src/weights/model_index.json',
      'src/weights/scheduler/',
      'src/weights/unet/',
      'src/weights/unet/x.bin',
    ]);
    for (const e of entries) {
      expect(e).toMatchObject({ mtime: 0, uid: 0, mode: e.type === 'directory' ? 0o755 : 0o644 });
    }
    expect(entries[2].body.toString()).toBe('{"a": 1}');
    expect(entries[5].body.equals(Buffer.alloc(5000, 3))).toBe(true);
  });

  it('gives the same bytes for the same weights', async () => {
    expect(await digest(tarDirectory(weights))).toBe(await digest(tarDirectory(weights)));
  });

  it('refuses symlinks in a directory', async () => {
    const dir = join(root, 'linked');
    await mkdir(dir);
    await symlink('/etc/passwd', join(dir, 'passwd'));
    await expect(listTar(tarDirectory(dir))).rejects.toThrow(/not a regular file/);
  });

  it('refuses an entry whose stream is longer or shorter than its size', async () => {
    const lying = (size: number, body: string) =>
      listTar(tarEntries([{ path: 'a.bin', size, stream: () => Readable.from([Buffer.from(body)]) }]));
    await expect(lying(2, 'abcdef')).rejects.toThrow(/longer than/);
    await expect(lying(10, 'abc')).rejects.toThrow(/has 3 bytes/);
  });

  it('refuses paths that leave the prefix', async () => {
    const entry = (path: string) => listTar(tarEntries([{ path, size: 0, stream: () => Readable.from([]) }]));
    await expect(entry('../etc/passwd')).rejects.toThrow(/unsafe path/);
    await expect(entry('/abs')).rejects.toThrow(/unsafe path/);
    await expect(entry('a/./b')).rejects.toThrow(/unsafe path/);
  });

  it('streams a zip archive, from a path or a random-access source, without unzipping it', async () => {
    // Prepare
    const zipPath = join(root, 'output.zip');
    await writeZip(zipPath, (zip) => {
      zip.addBuffer(Buffer.from('{}'), 'model_index.json');
      zip.addEmptyDirectory('vae/');
      zip.addBuffer(Buffer.alloc(100_000, 9), 'unet/diffusion_pytorch_model.bin');
    });

    // Act
    const fromPath = await listTar(tarFromZip(zipPath));
    const fromSource = await listTar(tarFromZip(await fileSource(zipPath)));

    // Assess
    expect(fromPath.map((e) => e.name)).toEqual([
      'src/',
      'src/weights/',
      'src/weights/model_index.json',
      'src/weights/vae/',
      'src/weights/unet/',
      'src/weights/unet/diffusion_pytorch_model.bin',
    ]);
    expect(fromPath.at(-1)!.body.equals(Buffer.alloc(100_000, 9))).toBe(true);
    expect(fromSource.map((e) => [e.name, e.body.length])).toEqual(fromPath.map((e) => [e.name, e.body.length]));
  });

  it('refuses a zip that expands beyond its budget or holds a symlink', async () => {
    const big = join(root, 'big.zip');
    await writeZip(big, (zip) => zip.addBuffer(Buffer.alloc(10_000), 'a.bin'));
    await expect(listTar(tarFromZip(big, 'src/weights/', { maxBytes: 5000 }))).rejects.toThrow(/expands beyond/);
    await expect(listTar(tarFromZip(big, 'src/weights/', { maxEntries: 0 }))).rejects.toThrow(/entries/);

    const linked = join(root, 'link.zip');
    await writeZip(linked, (zip) => zip.addBuffer(Buffer.from('/etc/passwd'), 'link', { mode: 0o120777 }));
    await expect(listTar(tarFromZip(linked))).rejects.toThrow(/symlink/);
  });
});
