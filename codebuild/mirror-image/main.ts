/**
 * Entry of the trainer image mirror inside CodeBuild (bundled to mirror-image.mjs at synth
 * time; see infra/constructs/trainer-image-mirror.ts): `node mirror-image.mjs` copies SOURCE_IMAGE
 * (`<registry>/<repo>@sha256:…`) into TARGET_REPOSITORY (`<ECR host>/<repo>`). The source's
 * credentials, when configured, come as SOURCE_USERNAME / SOURCE_PASSWORD (SECRETS_MANAGER
 * variables resolved by CodeBuild); ECR's through GetAuthorizationToken. Exits non-zero with one
 * readable line.
 */
import { z } from 'zod';
import type { RegistryClient } from '#shared/oci/registry';
import { ECRClient, registryCredentials, registryStores, splitRepository } from '../build-image/registry.ts';
import { mirrorImage } from './core.ts';

const MirrorEnv = z.object({
  SOURCE_IMAGE: z.string().regex(/@sha256:[0-9a-f]{64}$/, 'must be pinned by digest'),
  TARGET_REPOSITORY: z.string().min(1),
  SOURCE_USERNAME: z.string().optional(),
  SOURCE_PASSWORD: z.string().optional(),
});

async function main(): Promise<void> {
  const env = MirrorEnv.parse(process.env);
  const target = splitRepository(env.TARGET_REPOSITORY);
  const credentials = await registryCredentials({ REGISTRY_TYPE: 'ecr', REGISTRY_HOST: target.host }, () => new ECRClient({}));
  if (env.SOURCE_USERNAME) credentials.set(splitRepository(env.SOURCE_IMAGE).host, { username: env.SOURCE_USERNAME, password: env.SOURCE_PASSWORD ?? '' });
  const stores = registryStores(credentials);
  await mirrorImage(env.SOURCE_IMAGE, env.TARGET_REPOSITORY, (r) => stores(r) as { store: RegistryClient; repo: string }, (l) => process.stdout.write(`${l}\n`));
}

main().catch((e: Error) => {
  // The message only: registry errors name the problem, never a credential.
  process.stderr.write(`mirror failed: ${e.message}\n`);
  process.exit(1);
});
