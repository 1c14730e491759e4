/**
 * OCI / Docker image formats (only the fields this project reads or writes) and the store
 * interface shared by the registry client and the image layout, so `appendLayer` can go
 * registry→registry, layout→layout or registry→layout.
 */
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import * as z from '../zod.ts';

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerTar: 'application/vnd.docker.image.rootfs.diff.tar',
} as const;

export const MANIFEST_TYPES = [MediaTypes.ociManifest, MediaTypes.dockerManifest] as const;
export const INDEX_TYPES = [MediaTypes.ociIndex, MediaTypes.dockerList] as const;
export const ACCEPTED_TYPES = [...MANIFEST_TYPES, ...INDEX_TYPES];

export const DIGEST = /^sha256:[a-f0-9]{64}$/;
export const Digest = z.string().check(z.regex(DIGEST, 'is not a sha256 digest'));

const optionalString = () => z.optional(z.string());

export const Descriptor = z.looseObject({
  mediaType: z.string().check(z.minLength(1)),
  digest: Digest,
  size: z.number().check(z.int(), z.nonnegative()),
  annotations: z.optional(z.record(z.string(), z.string())),
  platform: z.optional(z.looseObject({ os: z.string(), architecture: z.string(), variant: optionalString() })),
});
export type Descriptor = z.infer<typeof Descriptor>;

export const ImageManifest = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: optionalString(),
  config: Descriptor,
  layers: z.array(Descriptor),
  annotations: z.optional(z.record(z.string(), z.string())),
});
export type ImageManifest = z.infer<typeof ImageManifest>;

export const ImageIndex = z.looseObject({ schemaVersion: z.literal(2), mediaType: optionalString(), manifests: z.array(Descriptor) });
export type ImageIndex = z.infer<typeof ImageIndex>;

const HistoryEntry = z.looseObject({ created: optionalString(), created_by: optionalString(), empty_layer: z.optional(z.boolean()) });

/** Image configuration; unknown fields pass through untouched so the template's settings survive. */
export const ImageConfig = z.looseObject({
  created: optionalString(),
  architecture: z.string(),
  os: z.string(),
  config: z.optional(
    z.looseObject({
      Env: z.nullish(z.array(z.string())),
      Entrypoint: z.nullish(z.array(z.string())),
      Cmd: z.nullish(z.array(z.string())),
      WorkingDir: z.nullish(z.string()),
      Labels: z.nullish(z.record(z.string(), z.string())),
    }),
  ),
  rootfs: z.looseObject({ type: z.literal('layers'), diff_ids: z.array(Digest) }),
  history: z.optional(z.array(HistoryEntry)),
});
export type ImageConfig = z.infer<typeof ImageConfig>;

export interface ManifestResult {
  manifest: ImageManifest;
  /** `sha256:…` of `raw`: the digest the image is pulled by. */
  digest: string;
  mediaType: string;
  raw: Buffer;
}

export interface BlobResult {
  digest: string;
  size: number;
}

/** What `appendLayer` needs from where images live. `repo` is ignored by a layout (one layout, one repository). */
export interface ImageStore {
  /** Stores with the same origin share blobs: a registry's base URL, a layout's directory. */
  readonly origin: string;
  getManifest(repo: string, ref: string): Promise<ManifestResult>;
  getBlob(repo: string, digest: string): Promise<Readable>;
  hasBlob(repo: string, digest: string): Promise<boolean>;
  /** Streams `body` in; when `digest` is given the computed one must match it. */
  uploadBlob(repo: string, body: Readable | Buffer, digest?: string): Promise<BlobResult>;
  putManifest(repo: string, tag: string, body: Buffer, mediaType: string): Promise<string>;
  /** Only registries: make a blob of `fromRepo` (same origin) present in `repo` without copying; false = not mounted. */
  mountBlob?(repo: string, digest: string, fromRepo: string): Promise<boolean>;
  /** How others pull what was pushed, e.g. `host/repo@sha256:…` or `oci:<dir>:<tag>`. */
  reference(repo: string, tag: string, digest: string): string;
}

export const sha256 = (data: Buffer | string): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Index entry for the platform this service builds for (Cog templates are linux/amd64). */
export function pickPlatform(index: ImageIndex, what: string): Descriptor {
  const found = index.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === 'amd64');
  if (!found) throw new Error(`${what} is an image index without a linux/amd64 image`);
  return found;
}

/** Parses a manifest body; an index comes back as `{ index }` so the caller can pick a platform. */
export function parseManifestBody(raw: Buffer, headerType: string | undefined, what: string): ParsedManifest {
  let json: { mediaType?: unknown; manifests?: unknown };
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new Error(`${what}: manifest is not JSON`);
  }
  const mediaType = typeof json.mediaType === 'string' ? json.mediaType : (headerType ?? '').split(';')[0].trim();
  const isIndex = (INDEX_TYPES as readonly string[]).includes(mediaType) || (!mediaType && Array.isArray(json.manifests));
  if (isIndex) return { index: parseOrThrow(ImageIndex, json, what), mediaType: mediaType || MediaTypes.ociIndex };
  if (mediaType && !(MANIFEST_TYPES as readonly string[]).includes(mediaType)) {
    throw new Error(`${what}: unsupported manifest media type ${mediaType}`);
  }
  return { manifest: parseOrThrow(ImageManifest, json, what), mediaType: mediaType || MediaTypes.ociManifest };
}

type ParsedManifest = { mediaType: string; index?: ImageIndex; manifest?: ImageManifest };

export function parseOrThrow<T>(schema: z.ZodMiniType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new Error(`${what}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** Reads a small stream (a config blob) into memory, refusing more than `max` bytes. */
export async function readLimited(stream: Readable, max: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    if (total > max) {
      stream.destroy();
      throw new Error(`${what} is larger than ${max} bytes`);
    }
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

/** Passes a stream through sha256 and a byte counter, computed while it flows. */
export function hashStream(body: Readable) {
  const hash = createHash('sha256');
  let size = 0;
  let error: Error | undefined;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  body.once('error', (e) => stream.destroy((error = e)));
  body.pipe(stream);
  return { stream, digest: () => `sha256:${hash.digest('hex')}`, size: () => size, error: () => error };
}
