/**
 * The daemonless build: `FROM <template>@<digest>` + `COPY weights /src/weights` + labels,
 * done with registry (or layout) calls only. The template's layers are never downloaded when
 * the target shares its registry (cross-repository mount) and are copied blob to blob, as
 * streams, otherwise; the weights become ONE uncompressed tar layer hashed while it uploads.
 *
 * Layer media type: the new layer is uncompressed, so its digest is also its diff_id.
 * OCI manifests use `application/vnd.oci.image.layer.v1.tar`; Docker v2 manifests use
 * `application/vnd.docker.image.rootfs.diff.tar`, the uncompressed Docker layer type:
 * distribution accepts any layer type in a schema2 manifest (it only checks the blobs exist),
 * containerd maps that type to "no compression", docker's classic puller sniffs compression
 * from the bytes, and skopeo/containers-image emit it for uncompressed Docker layers.
 * Checked with docker 28.2 (test/lambdas/shared/oci/docker.test.ts): it pulls and unpacks both families.
 * The manifest keeps the template's family so a Docker-only consumer still gets Docker types.
 */
import type { Readable } from 'node:stream';
import {
  type Descriptor,
  ImageConfig,
  MediaTypes,
  parseOrThrow,
  readLimited,
  sha256,
  type ImageManifest,
  type ImageStore,
} from './types.ts';

export interface AppendOptions {
  source: ImageStore;
  sourceRepo: string;
  /** Tag or `sha256:` digest of the template image. */
  sourceRef: string;
  target: ImageStore;
  targetRepo: string;
  tag: string;
  /** Produces the new layer, an uncompressed tar (called once). */
  layer: () => Readable;
  /** Labels added to the template's; a function reads them off the template's config. */
  labels: Record<string, string> | ((template: ImageConfig) => Record<string, string>);
  /** Replaces the template's entrypoint and command (both, as a Dockerfile's ENTRYPOINT resets CMD). */
  run?: { Entrypoint: string[]; Cmd: string[] };
  /** `created_by` of the new history entry. */
  history?: string;
  /** Creation time written in the config; pass a fixed one to make retries produce the same digest. */
  created?: Date;
  /** Template layers copied at once when they cannot be mounted. @default 3 */
  concurrency?: number;
}

export interface AppendResult {
  /** Manifest digest without `sha256:`: the model version id. */
  digest: string;
  manifestDigest: string;
  /** A pullable reference to the new image. */
  image: string;
  /** Size of the new layer. */
  bytes: number;
  /** Digest of the new layer, uncompressed: also its diff_id. */
  layerDigest: string;
}

const MAX_CONFIG = 8 * 1024 * 1024;

export async function appendLayer(o: AppendOptions): Promise<AppendResult> {
  const template = await readImageConfig(o.source, o.sourceRepo, o.sourceRef);
  const { config, manifest, mediaType } = template;
  await copyLayers(o, manifest.layers);

  const layer = await o.target.uploadBlob(o.targetRepo, o.layer());
  const created = (o.created ?? new Date()).toISOString();
  const docker = mediaType === MediaTypes.dockerManifest;
  const labels = typeof o.labels === 'function' ? o.labels(config) : o.labels;
  const newConfig = extendConfig(config, layer.digest, labels, created, o.history ?? 'COPY weights /src/weights', o.run);
  const configBody = Buffer.from(JSON.stringify(newConfig));
  const configBlob = await o.target.uploadBlob(o.targetRepo, configBody, sha256(configBody));

  const out: ImageManifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: docker ? MediaTypes.dockerConfig : MediaTypes.ociConfig, digest: configBlob.digest, size: configBlob.size },
    layers: [
      ...manifest.layers,
      { mediaType: docker ? MediaTypes.dockerLayerTar : MediaTypes.ociLayerTar, digest: layer.digest, size: layer.size },
    ],
  };
  if (!docker) out.annotations = { ...manifest.annotations, 'org.opencontainers.image.base.digest': template.digest };
  const body = Buffer.from(JSON.stringify(out));
  const manifestDigest = await o.target.putManifest(o.targetRepo, o.tag, body, mediaType);
  return {
    digest: manifestDigest.slice('sha256:'.length),
    manifestDigest,
    image: o.target.reference(o.targetRepo, o.tag, manifestDigest),
    bytes: layer.size,
    layerDigest: layer.digest,
  };
}

/** The image's config (for its Cog labels) and manifest; an index resolves to linux/amd64. */
export async function readImageConfig(store: ImageStore, repo: string, ref: string) {
  const { manifest, digest, mediaType } = await store.getManifest(repo, ref);
  const raw = await readLimited(await store.getBlob(repo, manifest.config.digest), MAX_CONFIG, `config of ${repo}:${ref}`);
  if (sha256(raw) !== manifest.config.digest) throw new Error(`config of ${repo}:${ref} does not match its digest`);
  const config = parseOrThrow(ImageConfig, JSON.parse(raw.toString('utf8')), `config of ${repo}:${ref}`);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new Error(`${repo}:${ref}: ${manifest.layers.length} layers but ${config.rootfs.diff_ids.length} diff_ids`);
  }
  return { config, manifest, digest, mediaType };
}

function extendConfig(
  config: ImageConfig,
  diffId: string,
  labels: Record<string, string>,
  created: string,
  createdBy: string,
  run: AppendOptions['run'],
): ImageConfig {
  const next: ImageConfig = structuredClone(config);
  next.created = created;
  next.config = { ...next.config, ...run, Labels: { ...next.config?.Labels, ...labels } };
  next.rootfs = { ...next.rootfs, diff_ids: [...next.rootfs.diff_ids, diffId] };
  // History entries must line up with layers; a template without history gets none rather than a partial one.
  if (next.history) next.history = [...next.history, { created, created_by: createdBy, comment: 'dreambooth-api' }];
  return next;
}

/** Makes every template layer present in the target: already there, mounted, or streamed blob to blob. */
async function copyLayers(o: AppendOptions, layers: Descriptor[]): Promise<void> {
  const sameOrigin = o.source.origin === o.target.origin;
  const queue = [...new Map(layers.map((l) => [l.digest, l])).values()];
  const worker = async () => {
    for (let l = queue.shift(); l; l = queue.shift()) {
      if (sameOrigin && o.target.mountBlob && o.sourceRepo !== o.targetRepo) {
        if (await o.target.mountBlob(o.targetRepo, l.digest, o.sourceRepo)) continue;
      }
      if (await o.target.hasBlob(o.targetRepo, l.digest)) continue;
      await o.target.uploadBlob(o.targetRepo, await o.source.getBlob(o.sourceRepo, l.digest), l.digest);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 3) }, worker));
}
