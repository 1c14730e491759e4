/**
 * The floor's upload in a worker thread of its own (bench/sagemaker.ts bundles and starts it):
 * the weights file as one blob, from a small heap that nothing else shares — the upload's best
 * case, as the build it is compared with also runs in a worker thread of its own.
 */
import { createReadStream } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { RegistryClient } from '#shared/oci/registry';

if (parentPort) {
  const port = parentPort;
  port.on('message', ({ registryUrl, repo, file }: { registryUrl: string; repo: string; file: string }) => {
    const started = Date.now();
    new RegistryClient({ baseUrl: registryUrl }).uploadBlob(repo, createReadStream(file)).then(
      () => port.postMessage({ seconds: (Date.now() - started) / 1000 }),
      (e: Error) => port.postMessage({ error: e.message }),
    );
  });
  port.postMessage({ ready: true });
}
