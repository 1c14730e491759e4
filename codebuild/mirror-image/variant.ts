/**
 * A template's SageMaker variant made in the stack's ECR (lambdas/shared/serving/template-variant-build.ts
 * starts it): the template's layers copied blob to blob from its registry into the templates'
 * repository, plus the serving adapter's layer, pushed under servingTag(<template digest>).
 * Skipped when the tag is there already; the push is deterministic, so a second build pushes the
 * same manifest.
 */
import { pushServingVariant, servingTag } from '#shared/oci/serving-variant';
import type { ImageStore } from '#shared/oci/types';

export type StoreFor = (repository: string) => { store: ImageStore; repo: string };

/** `source` is `<registry>/<repo>@sha256:…`; returns `targetRepository@sha256:…` of the variant. */
export async function makeTemplateVariant(source: string, targetRepository: string, storeFor: StoreFor, adapter: Buffer, log: (line: string) => void): Promise<string> {
  const m = source.match(/^(.+)@(sha256:[0-9a-f]{64})$/);
  if (!m) throw new Error(`the template image ${source} is not pinned by digest`);
  const [, repository, digest] = m as unknown as [string, string, string];
  const to = storeFor(targetRepository);
  const tag = servingTag(digest);
  const found = await to.store.getManifest(to.repo, tag).catch(() => null);
  if (found) {
    log(`${targetRepository}:${tag} is already in ECR`);
    return to.store.reference(to.repo, tag, found.digest);
  }
  const { image } = await pushServingVariant(to.store, to.repo, digest, adapter, storeFor(repository));
  log(`made ${image}: ${source} with the serving adapter`);
  return image;
}
