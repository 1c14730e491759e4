/**
 * An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/…`) behind the same
 * interface as the registry client. Images are named by the `org.opencontainers.image.ref.name`
 * annotation of index.json entries; a layout holds one repository, so `repo` is ignored.
 * References look like `oci:<dir>:<tag>`.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DIGEST,
  hashStream,
  ImageIndex,
  MediaTypes,
  parseManifestBody,
  parseOrThrow,
  pickPlatform,
  sha256,
  type BlobResult,
  type Descriptor,
  type ImageStore,
  type ManifestResult,
} from './types.ts';

export const REF_NAME = 'org.opencontainers.image.ref.name';
const TAG = /^[\w][\w.-]{0,127}$/;

export class OciLayout implements ImageStore {
  readonly dir: string;
  readonly origin: string;
  /** index.json is rewritten whole: serialize the writers of this process. */
  private indexLock: Promise<unknown> = Promise.resolve();

  constructor(dir: string) {
    this.dir = resolve(dir);
    this.origin = `oci:${this.dir}`;
  }

  reference(_repo: string, tag: string): string {
    return `oci:${this.dir}:${tag}`;
  }

  async getManifest(_repo: string, ref: string): Promise<ManifestResult> {
    const desc = DIGEST.test(ref) ? { digest: ref } : await this.resolveTag(ref);
    const first = await this.readManifest(desc.digest, ref);
    if (!first.index) return first.image!;
    const second = await this.readManifest(pickPlatform(first.index, `${this.origin}:${ref}`).digest, ref);
    if (!second.image) throw new Error(`${this.origin}:${ref}: nested image index`);
    return second.image;
  }

  async getBlob(_repo: string, digest: string): Promise<Readable> {
    const path = this.blobPath(digest);
    if (!(await exists(path))) throw new Error(`blob ${digest} is not in ${this.dir}`);
    return createReadStream(path);
  }

  async hasBlob(_repo: string, digest: string): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  /** Writes to a temporary file while hashing, then renames it to its digest (atomic, never half a blob). */
  async uploadBlob(_repo: string, body: Readable | Buffer, digest?: string): Promise<BlobResult> {
    await this.init();
    const tmp = join(this.dir, `.upload-${randomUUID()}`);
    try {
      const hashed = hashStream(Buffer.isBuffer(body) ? Readable.from([body]) : body);
      await pipeline(hashed.stream, createWriteStream(tmp));
      const actual = hashed.digest();
      if (digest && digest !== actual) throw new Error(`blob content does not match ${digest}`);
      await rename(tmp, this.blobPath(actual));
      return { digest: actual, size: hashed.size() };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async putManifest(_repo: string, tag: string, body: Buffer, mediaType: string): Promise<string> {
    if (!TAG.test(tag)) throw new Error(`invalid tag: ${JSON.stringify(tag)}`);
    const { digest, size } = await this.uploadBlob('', body);
    const entry: Descriptor = { mediaType, digest, size, annotations: { [REF_NAME]: tag } };
    const update = this.indexLock.then(async () => {
      const index = await this.readIndex();
      index.manifests = [...index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag), entry];
      await writeAtomic(join(this.dir, 'index.json'), JSON.stringify(index, null, 2));
    });
    this.indexLock = update.catch(() => undefined);
    await update;
    return digest;
  }

  /** Creates the layout's skeleton if it is missing. */
  async init(): Promise<void> {
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    if (!(await exists(join(this.dir, 'oci-layout')))) {
      await writeAtomic(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    }
    if (!(await exists(join(this.dir, 'index.json')))) {
      await writeAtomic(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [] }));
    }
  }

  async readIndex(): Promise<ImageIndex> {
    const raw = await readFile(join(this.dir, 'index.json'), 'utf8').catch(() => {
      throw new Error(`${this.dir} is not an OCI image layout (no index.json)`);
    });
    return parseOrThrow(ImageIndex, JSON.parse(raw), `${this.dir}/index.json`);
  }

  private async resolveTag(tag: string): Promise<Descriptor> {
    const found = (await this.readIndex()).manifests.filter((m) => m.annotations?.[REF_NAME] === tag).at(-1);
    if (!found) throw new Error(`no image tagged ${tag} in ${this.dir}`);
    return found;
  }

  private async readManifest(digest: string, ref: string) {
    const raw = await readFile(this.blobPath(digest));
    if (sha256(raw) !== digest) throw new Error(`blob ${digest} in ${this.dir} is corrupt`);
    const parsed = parseManifestBody(raw, undefined, `${this.origin}:${ref}`);
    if (parsed.index) return { index: parsed.index };
    return { image: { manifest: parsed.manifest!, mediaType: parsed.mediaType, digest, raw } as ManifestResult };
  }

  private blobPath(digest: string): string {
    if (!DIGEST.test(digest)) throw new Error(`invalid digest: ${JSON.stringify(digest)}`);
    return join(this.dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function writeAtomic(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomUUID()}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}
