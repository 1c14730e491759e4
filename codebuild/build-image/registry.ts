/**
 * Where the build pushes and pulls: the configured registry with its credentials (ECR through
 * GetAuthorizationToken, an OCI registry through the project's Secrets Manager variables), and
 * any other registry (a public template's) anonymously. Credentials never leave this module.
 */
import {
  CreateRepositoryCommand,
  DescribeRepositoriesCommand,
  ECRClient,
  GetAuthorizationTokenCommand,
} from '@aws-sdk/client-ecr';
import type { ProjectEnv } from '#shared/build-env';
import type { Credentials } from '#shared/oci/auth';
import { RegistryClient } from '#shared/oci/registry';
import type { ImageStore } from '#shared/oci/types';

/** The registry's part of a project's environment (lambdas/shared/build-env.ts). */
export type RegistryEnv = Omit<ProjectEnv, 'REPOSITORY_PREFIX'>;

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d+)?$/;
const DOCKER_HUB = 'registry-1.docker.io';

/** `host/path` of an image reference; a reference without a host is Docker Hub's, as docker reads it. */
export function splitRepository(repository: string): { host: string; repo: string } {
  const [first, ...rest] = repository.split('/');
  const isHost = rest.length > 0 && (/[.:]/.test(first!) || first === 'localhost');
  if (isHost) return { host: first!, repo: rest.join('/') };
  return { host: DOCKER_HUB, repo: rest.length ? repository : `library/${repository}` };
}

/** Stores by host: one client per registry, so tokens are fetched once and mounts see one origin. */
export function registryStores(credentials: Map<string, Credentials>) {
  const clients = new Map<string, RegistryClient>();
  return (repository: string): { store: ImageStore; repo: string } => {
    const { host, repo } = splitRepository(repository);
    let client = clients.get(host);
    if (!client) {
      // Like docker, a loopback registry is spoken to in plain http; every other one over TLS.
      const scheme = LOOPBACK.test(host) ? 'http' : 'https';
      client = new RegistryClient({ baseUrl: `${scheme}://${host}`, auth: credentials.get(host), timeoutMs: 60_000 });
      clients.set(host, client);
    }
    return { store: client, repo };
  };
}

/** The configured registry's credentials, keyed by host (none for an anonymous OCI registry). */
export async function registryCredentials(env: RegistryEnv, ecr: () => ECRClient): Promise<Map<string, Credentials>> {
  if (env.REGISTRY_TYPE === 'oci') {
    if (!env.REGISTRY_USERNAME) return new Map();
    return new Map([[env.REGISTRY_HOST, { username: env.REGISTRY_USERNAME, password: env.REGISTRY_PASSWORD ?? '' }]]);
  }
  const out = await ecr().send(new GetAuthorizationTokenCommand({}));
  const token = out.authorizationData?.[0]?.authorizationToken;
  if (!token) throw new Error('ECR returned no authorization token');
  const decoded = Buffer.from(token, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return new Map([[env.REGISTRY_HOST, { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }]]);
}

/** ECR repositories appear per model: create one on its first version (as the docker buildspec does). */
export async function ensureEcrRepository(ecr: ECRClient, name: string): Promise<boolean> {
  try {
    await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [name] }));
    return false;
  } catch (e) {
    if ((e as Error).name !== 'RepositoryNotFoundException') throw e;
  }
  try {
    await ecr.send(new CreateRepositoryCommand({ repositoryName: name, imageScanningConfiguration: { scanOnPush: true } }));
    return true;
  } catch (e) {
    // Two first builds of one model at once: the other one created it.
    if ((e as Error).name === 'RepositoryAlreadyExistsException') return false;
    throw e;
  }
}

export { ECRClient };
