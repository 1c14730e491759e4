/**
 * Entry of the trainer image mirror inside CodeBuild (bundled to mirror-image.mjs at synth
 * time; see infra/constructs/trainer-image-mirror.ts): `node mirror-image.mjs` copies SOURCE_IMAGE
 * (`<registry>/<repo>@sha256:…`) into TARGET_REPOSITORY (`<ECR host>/<repo>`). The source's
 * credentials, when configured, come as SOURCE_USERNAME / SOURCE_PASSWORD (SECRETS_MANAGER
 * variables resolved by CodeBuild); ECR's through GetAuthorizationToken. Exits non-zero with one
 * readable line.
 *
 * With MODE=template-variant (the template variant project, infra/constructs/template-variant.ts)
 * it makes a template's SageMaker variant instead (./variant.ts): SOURCE_IMAGE is the template,
 * TARGET_REPOSITORY its repository in the stack's ECR, created when missing, and the serving
 * adapter lies beside the script.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { RegistryClient } from '#shared/oci/registry';
import { SERVING_ADAPTER } from '#shared/oci/serving-variant';
import { ECRClient, ensureEcrRepository, registryCredentials, registryStores, splitRepository } from '../build-image/registry.ts';
import { mirrorImage } from './core.ts';
import { makeTemplateVariant } from './variant.ts';

const MirrorEnv = z.object({
  SOURCE_IMAGE: z.string().regex(/@sha256:[0-9a-f]{64}$/, 'must be pinned by digest'),
  TARGET_REPOSITORY: z.string().min(1),
  SOURCE_USERNAME: z.string().optional(),
  SOURCE_PASSWORD: z.string().optional(),
  MODE: z.enum(['mirror', 'template-variant']).default('mirror'),
});

async function main(): Promise<void> {
  const env = MirrorEnv.parse(process.env);
  const target = splitRepository(env.TARGET_REPOSITORY);
  const credentials = await registryCredentials({ REGISTRY_TYPE: 'ecr', REGISTRY_HOST: target.host }, () => new ECRClient({}));
  if (env.SOURCE_USERNAME) credentials.set(splitRepository(env.SOURCE_IMAGE).host, { username: env.SOURCE_USERNAME, password: env.SOURCE_PASSWORD ?? '' });
  const stores = registryStores(credentials);
  const log = (l: string) => process.stdout.write(`${l}\n`);
  if (env.MODE === 'template-variant') {
    await ensureEcrRepository(new ECRClient({}), target.repo);
    // Beside the bundle: infra/constructs/build.ts bundleBuildImage copies it there.
    const adapter = await readFile(join(process.cwd(), SERVING_ADAPTER));
    await makeTemplateVariant(env.SOURCE_IMAGE, env.TARGET_REPOSITORY, stores, adapter, log);
    return;
  }
  await mirrorImage(env.SOURCE_IMAGE, env.TARGET_REPOSITORY, (r) => stores(r) as { store: RegistryClient; repo: string }, log);
}

main().catch((e: Error) => {
  // The message only: registry errors name the problem, never a credential.
  process.stderr.write(`mirror failed: ${e.message}\n`);
  process.exit(1);
});
