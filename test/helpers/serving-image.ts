/**
 * A SageMaker variant's image as the build writes it, reduced to what local mode's hosting
 * reads: an image config with labels (the demo template's `ai.dreambooth.demo-template` and
 * `ai.dreambooth.weights-digest`), one small layer, pushed to an image store.
 */
import { Readable } from 'node:stream';
import { tarEntries } from '#shared/oci/tar';
import { MediaTypes, sha256, type ImageStore } from '#shared/oci/types';

/** Pushes the image under `tag`; answers its manifest digest. */
export async function pushLabelledImage(store: ImageStore, repo: string, tag: string, labels: Record<string, string>): Promise<string> {
  const text = Buffer.from('print("serve")\n');
  const layer = await store.uploadBlob(repo, tarEntries([{ path: 'serve.py', size: text.length, stream: () => Readable.from([text]) }], 'opt/'));
  const config = {
    architecture: 'amd64',
    os: 'linux',
    config: { Entrypoint: ['python3', '/opt/serve.py'], Cmd: ['serve'], Labels: labels },
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
  };
  const body = Buffer.from(JSON.stringify(config));
  const blob = await store.uploadBlob(repo, body, sha256(body));
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { mediaType: MediaTypes.ociConfig, digest: blob.digest, size: blob.size },
    layers: [{ mediaType: MediaTypes.ociLayerTar, digest: layer.digest, size: layer.size }],
  };
  return store.putManifest(repo, tag, Buffer.from(JSON.stringify(manifest)), MediaTypes.ociManifest);
}
