/**
 * A runnable SageMaker variant for tests of serving on a docker engine: the Cog-like image built
 * from the machine's own Python (./python-image.ts), whose `python -m cog.server.http` answers
 * a predictor's synchronous `POST /predictions` (test/helpers/cog/server/http.py), plus the
 * variant layer the build appends (lambdas/shared/oci/serving-variant.ts: the repository's
 * serving adapter, its entrypoint and `serve`). Never pulled from the internet.
 */
import { readFileSync } from 'node:fs';
import { RegistryClient } from '#shared/oci/registry';
import { pushServingVariant, SERVING_ADAPTER } from '#shared/oci/serving-variant';
import { repoFile } from './paths.ts';
import { buildPythonCogImage } from './python-image.ts';

/** Builds and pushes both to `registry` (`127.0.0.1:<port>`); answers the variant's `host/repo@sha256:…`. */
export async function buildRunnableServingImage(registry: string, repo: string): Promise<{ version: string; serving: string }> {
  const version = await buildPythonCogImage(registry, repo);
  const digest = version.split('@')[1]!;
  const store = new RegistryClient({ baseUrl: `http://${registry}` });
  const variant = await pushServingVariant(store, repo, digest, readFileSync(repoFile(`serving/${SERVING_ADAPTER}`)));
  return { version, serving: variant.image };
}
