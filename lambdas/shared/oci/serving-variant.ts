/**
 * A version's SageMaker variant: the version's image plus one layer holding the serving adapter
 * (serving/sagemaker_adapter.py) and the entrypoint that runs it, since SageMaker starts an
 * inference container as `docker run <image> serve` and CreateModel takes no entrypoint. Every
 * other layer is the version's own, shared in the same repository: the variant costs the
 * adapter's kilobytes, not a second copy of the weights.
 */
import { Readable } from 'node:stream';
import { appendLayer } from './append.ts';
import { tarEntries } from './tar.ts';
import type { ImageStore } from './types.ts';

/** The adapter's file name, next to the build's script (and in serving/ of the repository). */
export const SERVING_ADAPTER = 'sagemaker_adapter.py';
/** Where the variant holds the adapter. */
export const SERVING_ADAPTER_PATH = `/opt/dreambooth/${SERVING_ADAPTER}`;
export const SERVING_ENTRYPOINT = ['python3', SERVING_ADAPTER_PATH];
/** SageMaker's argument, which the adapter accepts. */
export const SERVING_CMD = ['serve'];
/** The label naming the version's weights: the uncompressed digest (diff_id) of its weights layer, `sha256:…`. */
export const WEIGHTS_DIGEST_LABEL = 'ai.dreambooth.weights-digest';

/** The variant's tag in the version's repository. */
export const servingTag = (versionDigest: string) => `${versionDigest.replace(/^sha256:/, '')}-sagemaker`;

export interface ServingVariant {
  /** `repo@sha256:…` of the variant. */
  image: string;
  weightsDigest: string;
}

/**
 * Appends the adapter layer to the version `versionDigest` of `repo` and pushes it under
 * servingTag(); with `from`, the image is read there and its layers copied into `repo` (a
 * template's variant made in the stack's ECR from the template's own registry).
 */
export async function pushServingVariant(
  store: ImageStore,
  repo: string,
  versionDigest: string,
  adapter: Buffer,
  from: { store: ImageStore; repo: string } = { store, repo },
): Promise<ServingVariant> {
  const digest = versionDigest.startsWith('sha256:') ? versionDigest : `sha256:${versionDigest}`;
  let weightsDigest = '';
  const out = await appendLayer({
    source: from.store,
    sourceRepo: from.repo,
    sourceRef: digest,
    target: store,
    targetRepo: repo,
    tag: servingTag(digest),
    layer: () => tarEntries([{ path: SERVING_ADAPTER, size: adapter.length, stream: () => Readable.from([adapter]) }], 'opt/dreambooth/'),
    // The weights are the version's last layer (the build's COPY weights), whichever build made it.
    labels: (version) => {
      weightsDigest = version.rootfs.diff_ids.at(-1) ?? '';
      if (!weightsDigest) throw new Error(`${from.repo}@${digest} has no layers: not a model version`);
      return { [WEIGHTS_DIGEST_LABEL]: weightsDigest };
    },
    run: { Entrypoint: SERVING_ENTRYPOINT, Cmd: SERVING_CMD },
    history: `COPY ${SERVING_ADAPTER} ${SERVING_ADAPTER_PATH}`,
    // Fixed like the version's: a retried build pushes the same variant.
    created: new Date(0),
  });
  return { image: store.reference(repo, servingTag(digest), out.manifestDigest), weightsDigest };
}
