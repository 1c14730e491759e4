/**
 * The build-model project in local mode (StartBuild of `startBuild.sync`), both paths real:
 * - docker: a docker engine and a registry are reachable → run the commands of
 *   buildspecs/build-model.yml themselves with bash (./buildspec.ts);
 * - append: no daemon → build the same image without one (./append.ts): the serving template's
 *   layers stay where they are, one new layer holds `src/weights/…`, then config and manifest.
 * Either way the result has the shape of startBuild.sync's output, and a failed build throws
 * (as AWS fails the task) with the log tail in the cause.
 */
import type { Config } from '#shared/config';
import { ecrWouldRefuse } from '../ecr.ts';
import { StateError } from '../errors.ts';
import { appendBuild, type AppendBuildOptions } from './append.ts';
import { dockerBuild, type DockerBuildOptions } from './buildspec.ts';

/** `docker` or `append`: the configuration's `build.strategy`, or `--build`. */
export type BuildStrategy = Config['build']['strategy'];

export interface LocalBuildOptions extends AppendBuildOptions, DockerBuildOptions {
  strategy: BuildStrategy;
}

interface StartBuildInput {
  ProjectName?: string;
  EnvironmentVariablesOverride?: { Name: string; Value: string; Type?: string }[];
}

export class BuildFailed extends Error {
  constructor(message: string) {
    super(message);
    // The error name Step Functions reports for a failed startBuild.sync.
    this.name = 'States.TaskFailed';
  }
}

/**
 * CodeBuild refuses StartBuild when an environment variable passes 4,096 characters
 * (InvalidInputException "EnvironmentVariable should be at most 4096 characters"), which the
 * state machine sees as the task's error. Local mode refuses it too, counting the name as well.
 */
export const CODEBUILD_VARIABLE_MAX_CHARS = 4096;

function checkOverrides(overrides: NonNullable<StartBuildInput['EnvironmentVariablesOverride']>): void {
  for (const { Name, Value } of overrides) {
    const chars = Name.length + Value.length;
    if (chars > CODEBUILD_VARIABLE_MAX_CHARS) {
      throw new StateError(
        'CodeBuild.InvalidInputException',
        `EnvironmentVariable should be at most ${CODEBUILD_VARIABLE_MAX_CHARS} characters (${Name}: ${chars} with its name)`,
      );
    }
  }
}

export async function runLocalBuild(input: unknown, opts: LocalBuildOptions, signal: AbortSignal) {
  const overrides = (input as StartBuildInput).EnvironmentVariablesOverride ?? [];
  checkOverrides(overrides);
  const env = Object.fromEntries(overrides.map((v) => [v.Name, v.Value]));
  const id = `local:${env.TRAINING_ID ?? 'build'}-${Date.now().toString(36)}`;
  const started = Date.now();
  try {
    // Local mode may be stricter than AWS, never looser: what ECR refuses fails here too.
    const refused = ecrWouldRefuse(env.IMAGE_REPOSITORY ?? '');
    if (refused) throw Object.assign(new Error(refused), { phase: 'PRE_BUILD' });
    const exported = opts.strategy === 'docker' ? await dockerBuild(env, opts, signal) : await appendBuild(env, opts, signal);
    opts.log(`build ${env.TRAINING_ID}: pushed ${exported.IMAGE_URI} in ${((Date.now() - started) / 1000).toFixed(1)} s (${opts.strategy})`);
    return {
      Build: {
        Id: id,
        BuildStatus: 'SUCCEEDED',
        ExportedEnvironmentVariables: Object.entries(exported).map(([Name, Value]) => ({ Name, Value })),
      },
    };
  } catch (e) {
    const failure = e as Error & { phase?: string; tail?: string };
    const cause = {
      Build: { Id: id, BuildStatus: signal.aborted ? 'STOPPED' : 'FAILED', Phases: [{ PhaseType: failure.phase ?? 'BUILD', PhaseStatus: 'FAILED' }] },
      log_tail: failure.tail ?? failure.message,
    };
    throw new BuildFailed(JSON.stringify(cause));
  }
}
