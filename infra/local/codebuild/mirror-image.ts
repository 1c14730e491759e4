/**
 * The mirror-image project in local mode: the same copy (codebuild/mirror-image) from the
 * configured registry into local mode's registry, which stands for ECR; without a registry
 * (an OCI layout on disk) there is nothing to copy into and the job runs the configured image.
 */
import { RegistryClient } from '#shared/oci/registry';
import { mirrorImage } from '../../../codebuild/mirror-image/core.ts';
import { StateError } from '../errors.ts';

export async function runLocalMirror(input: unknown, registryHost: string | null, log: (line: string) => void): Promise<unknown> {
  const env = Object.fromEntries(((input as { EnvironmentVariablesOverride?: { Name: string; Value: string }[] }).EnvironmentVariablesOverride ?? []).map((v) => [v.Name, v.Value]));
  const id = `local:mirror-${Date.now().toString(36)}`;
  if (!registryHost) return { Build: { Id: id, BuildStatus: 'SUCCEEDED' } };
  const target = `${registryHost}/${env.TARGET_REPOSITORY!.split('/').slice(1).join('/')}`;
  const client = (repository: string) => {
    const [host, ...rest] = repository.split('/');
    return { store: new RegistryClient({ baseUrl: `http://${host}` }), repo: rest.join('/') };
  };
  try {
    await mirrorImage(env.SOURCE_IMAGE!, target, client, (l) => log(`mirror: ${l}`));
    return { Build: { Id: id, BuildStatus: 'SUCCEEDED' } };
  } catch (e) {
    throw new StateError('States.TaskFailed', JSON.stringify({ Build: { Id: id, BuildStatus: 'FAILED', Phases: [{ PhaseType: 'BUILD', PhaseStatus: 'FAILED' }] }, log_tail: `mirror failed: ${(e as Error).message}` }));
  }
}
