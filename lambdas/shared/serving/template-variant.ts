/**
 * A template's SageMaker variant, the image of the one endpoint that serves all weights versions
 * of the template: the template plus the serving adapter's layer (../oci/serving-variant.ts),
 * pushed beside the template under servingTag(<template digest>). Made once per template digest
 * by the first prediction that needs it, found by that tag afterwards; the push is deterministic
 * (fixed creation time), so two predictions making it at once push the same manifest.
 *
 * It is made with registry calls from the endpoint step where the template's registry is one
 * the step can write without credentials: local mode's registry on loopback, or an OCI layout on
 * disk. On AWS a CodeBuild build makes it in the stack's ECR (./template-variant-build.ts): the
 * step is a Lambda function, which neither holds registry credentials nor runs for the minutes
 * a multi-gigabyte copy takes.
 */
import { OciLayout } from '../oci/layout.ts';
import { RegistryClient } from '../oci/registry.ts';
import { pushServingVariant, servingTag } from '../oci/serving-variant.ts';
import type { ImageStore } from '../oci/types.ts';

export interface TemplateRef {
  name: string;
  repository: string;
  digest: string;
}

/** The variant's image (`repository@sha256:…` or `repository:tag`), or what its making waits for. */
export type VariantState = { image: string } | { waiting: string };

/** The template's variant for the endpoint `endpoint`, made when missing. */
export type TemplateVariants = (template: TemplateRef, endpoint: string) => Promise<VariantState>;

/** The direct path where the template's registry allows it, else `elsewhere` (the build on AWS) when the deployment has one. */
export function templateVariants(direct: TemplateVariants, elsewhere?: TemplateVariants, storeOf = directStoreOf): TemplateVariants {
  return (t, endpoint) => {
    if (storeOf(t.repository) || !elsewhere) return direct(t, endpoint);
    return elsewhere(t, endpoint);
  };
}

/** A store the step may write: `oci:<dir>`, or `host:port/repo` on loopback; null otherwise. */
export function directStoreOf(repository: string): { store: ImageStore; repo: string } | null {
  if (repository.startsWith('oci:')) return { store: new OciLayout(repository.slice(4)), repo: '' };
  const slash = repository.indexOf('/');
  const host = slash > 0 ? repository.slice(0, slash) : '';
  if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(host)) return null;
  return { store: new RegistryClient({ baseUrl: `http://${host}` }), repo: repository.slice(slash + 1) };
}

/** Finds or pushes variants through the stores `storeOf` gives; `adapter` reads serving/sagemaker_adapter.py. */
export function directTemplateVariants(adapter: () => Promise<Buffer>, storeOf = directStoreOf): TemplateVariants {
  const made = new Map<string, Promise<VariantState>>();
  return (t) => {
    const key = `${t.repository}@${t.digest}`;
    let image = made.get(key);
    if (!image) {
      image = variantOf(t, adapter, storeOf);
      made.set(key, image);
      // A failure is not kept: the next prediction tries again.
      image.catch(() => made.delete(key));
    }
    return image;
  };
}

async function variantOf(t: TemplateRef, adapter: () => Promise<Buffer>, storeOf: typeof directStoreOf): Promise<VariantState> {
  const target = storeOf(t.repository);
  if (!target) {
    throw new Error(
      `the template ${t.repository} is in a registry this deployment does not write from the endpoint step, and the deployment has no template variant project (its model registry is not ECR), so its SageMaker variant (the template plus the serving adapter) cannot be made: configure an ECR model registry, or train on a template without a weights input for an image version`,
    );
  }
  const digest = t.digest.startsWith('sha256:') ? t.digest : `sha256:${t.digest}`;
  const tag = servingTag(digest);
  const found = await target.store.getManifest(target.repo, tag).catch(() => null);
  if (found) return { image: target.store.reference(target.repo, tag, found.digest) };
  return { image: (await pushServingVariant(target.store, target.repo, digest, await adapter())).image };
}
