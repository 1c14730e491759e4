/**
 * One append build in a worker thread (./append.ts bundles and starts it): the code CodeBuild
 * runs (codebuild/build-image), with its S3 client made here from plain settings. Messages: in, one `AppendJob`; out, `log` lines, then `done` with
 * the exported variables or `error` with the message.
 */
import { readFileSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { OciLayout } from '#shared/oci/layout';
import { RegistryClient } from '#shared/oci/registry';
import { SERVING_ADAPTER } from '#shared/oci/serving-variant';
import type { ImageStore } from '#shared/oci/types';
import { BuildImageEnv } from '#shared/build-env';
import { buildImage } from '../../../codebuild/build-image/core.ts';

export interface AppendJob {
  env: Record<string, string>;
  s3: S3ClientConfig;
  registryHost: string | null;
  limits: { maxEntries: number; maxBytes: number };
}

export type AppendMessage = { type: 'log'; line: string } | { type: 'done'; exported: Record<string, string> } | { type: 'error'; message: string };

/** `host:port/repo` → registry; `oci:<dir>` → an OCI layout directory. */
export function store(repository: string, registryHost: string | null): { store: ImageStore; repo: string } {
  if (repository.startsWith('oci:')) return { store: new OciLayout(repository.slice(4)), repo: '' };
  const slash = repository.indexOf('/');
  const host = repository.slice(0, slash);
  if (registryHost && host !== registryHost) throw new Error(`${repository} is not in the local registry ${registryHost}`);
  return { store: new RegistryClient({ baseUrl: `http://${host}` }), repo: repository.slice(slash + 1) };
}

export async function appendBuild(job: AppendJob, log: (line: string) => void): Promise<Record<string, string>> {
  const env = BuildImageEnv.parse({ ...job.env, ARCHIVE_MAX_ENTRIES: job.limits.maxEntries, ARCHIVE_MAX_UNCOMPRESSED_BYTES: job.limits.maxBytes });
  const s3 = new S3Client(job.s3);
  try {
    // Beside the bundled worker, as beside CodeBuild's script (bundleBuildImage puts it there).
    const servingAdapter = readFileSync(new URL(`./${SERVING_ADAPTER}`, import.meta.url));
    return { ...(await buildImage(env, { s3, storeFor: (r) => store(r, job.registryHost), log, servingAdapter })) };
  } finally {
    s3.destroy();
  }
}

if (parentPort) {
  const port = parentPort;
  port.on('message', (job: AppendJob) => {
    const send = (m: AppendMessage) => port.postMessage(m);
    appendBuild(job, (line) => send({ type: 'log', line })).then(
      (exported) => send({ type: 'done', exported }),
      (e: unknown) => send({ type: 'error', message: (e as Error)?.message ?? String(e) }),
    );
  });
  port.postMessage({ type: 'ready' });
}
