/**
 * Entry of the `append` build inside CodeBuild (bundled to build-image.mjs with esbuild at synth
 * time; see infra/constructs/build.ts): `node build-image.mjs <out dir>` reads the build's
 * environment (lambdas/shared/build-env.ts, as the docker buildspec does), builds and pushes,
 * and writes IMAGE_DIGEST, IMAGE_URI and IMAGE_SERVING_URI as files into <out dir> for the
 * buildspec to export. Exits non-zero with one readable line. The serving adapter sits beside
 * the bundle in the project's source (infra/constructs/build.ts bundleBuildImage).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { BuildImageEnv, ProjectEnv } from '#shared/build-env';
import { SERVING_ADAPTER } from '#shared/oci/serving-variant';
import { buildImage } from './core.ts';
import { ECRClient, ensureEcrRepository, registryCredentials, registryStores, splitRepository } from './registry.ts';

async function main(outDir: string): Promise<void> {
  const env = BuildImageEnv.parse(process.env);
  const registry = ProjectEnv.parse(process.env);
  const log = (line: string) => process.stdout.write(`${line}\n`);
  let ecr: ECRClient | undefined;
  const ecrClient = () => (ecr ??= new ECRClient({}));
  const credentials = await registryCredentials(registry, ecrClient);
  if (registry.REGISTRY_TYPE === 'ecr') {
    const { repo } = splitRepository(env.IMAGE_REPOSITORY);
    if (await ensureEcrRepository(ecrClient(), repo)) log(`created ECR repository ${repo}`);
  }
  const out = await buildImage(env, {
    // Path-style addressing works on AWS and on every S3-compatible endpoint.
    s3: new S3Client({ forcePathStyle: true }),
    storeFor: registryStores(credentials),
    log,
    servingAdapter: readFileSync(new URL(`./${SERVING_ADAPTER}`, import.meta.url)),
  });
  mkdirSync(outDir, { recursive: true });
  for (const [name, value] of Object.entries(out)) writeFileSync(join(outDir, name), value);
}

const outDir = process.argv[2];
if (!outDir) {
  process.stderr.write('usage: build-image <out dir>\n');
  process.exit(2);
}
main(outDir).catch((e: Error) => {
  // The message only: zod and registry errors name the problem, never a credential.
  process.stderr.write(`append build failed: ${e.message}\n`);
  process.exit(1);
});
