/**
 * Copies a trainer image into the stack's ECR by digest, blob to blob (SageMaker pulls only
 * from ECR, and ECR's pull-through cache does not cover r8.im). Blobs stream registry to
 * registry with their digests checked; the manifest's bytes are pushed unchanged, so the image
 * keeps its digest. Skipped when the target has it already; a re-run after a partial copy
 * uploads only the blobs still missing.
 */
import { type RegistryClient, RegistryError } from '#shared/oci/registry';

export interface MirrorResult {
  digest: string;
  skipped: boolean;
  /** Blobs uploaded (those the target lacked). */
  copied: number;
}

export type RegistryFor = (repository: string) => { store: RegistryClient; repo: string };

export async function mirrorImage(source: string, targetRepository: string, registryFor: RegistryFor, log: (line: string) => void): Promise<MirrorResult> {
  const m = source.match(/^(.+)@(sha256:[0-9a-f]{64})$/);
  if (!m) throw new Error(`the trainer image ${source} is not pinned by digest`);
  const [, repository, digest] = m as unknown as [string, string, string];
  const from = registryFor(repository);
  const to = registryFor(targetRepository);
  if (await to.store.headManifest(to.repo, digest)) {
    log(`${targetRepository}@${digest} is already in ECR`);
    return { digest, skipped: true, copied: 0 };
  }
  let manifest;
  try {
    manifest = await from.store.getManifest(from.repo, digest);
  } catch (e) {
    const status = e instanceof RegistryError ? e.status : 0;
    if (status === 401 || status === 403 || /token request .* refused/.test((e as Error).message)) throw new Error(`the trainer image ${source} is not readable with the configured credentials (HTTP ${status}): check source_credentials_secret`);
    if (status === 404) throw new Error(`the trainer image ${source} does not exist at its registry (HTTP 404): check the trainer's image`);
    throw e;
  }
  // An index resolves to its linux/amd64 image, whose digest differs from the one configured.
  if (manifest.digest !== digest) throw new Error(`the trainer image ${source} is a multi-platform index: pin its linux/amd64 image's digest (${manifest.digest})`);
  let copied = 0;
  for (const blob of [manifest.manifest.config, ...manifest.manifest.layers]) {
    if (await to.store.hasBlob(to.repo, blob.digest)) continue;
    await to.store.uploadBlob(to.repo, await from.store.getBlob(from.repo, blob.digest), blob.digest);
    copied++;
    log(`copied ${blob.digest} (${blob.size} bytes)`);
  }
  // Pushed by digest, not by tag: the mirror's repository keeps immutable tags and needs none.
  await to.store.putManifest(to.repo, digest, manifest.raw, manifest.mediaType);
  log(`mirrored ${source} to ${targetRepository}@${digest}`);
  return { digest, skipped: false, copied };
}
