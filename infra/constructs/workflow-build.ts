/**
 * The workflow's steps after staging: the image build (CodeBuild) or, for a template that loads
 * its weights from an input, none. Built in the workflow's scope (infra/constructs/workflow.ts),
 * so the states keep their ids.
 */
import { BuildEnvironmentVariableType, type IProject } from 'aws-cdk-lib/aws-codebuild';
import { Choice, Condition, Errors, IntegrationPattern, JsonPath, type RetryProps, type State, type TaskStateBase, Timeout } from 'aws-cdk-lib/aws-stepfunctions';
import { CodeBuildStartBuild } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import type { Construct } from 'constructs';
import { BUILD_OVERRIDE_NAMES } from '#shared/build-env';
import type { Config } from '#shared/config';
import { buildTimeouts, type ModelBuild } from './build.ts';
import { BUILD_QUOTA_RETRY, TRANSIENT_RETRY } from './retries.ts';

/** The house rules of every Task: its retries, then a catch-all to where failures go. */
export function guarded<T extends TaskStateBase>(task: T, onError: State, retries: RetryProps[] = [TRANSIENT_RETRY]): T {
  for (const retry of retries) task.addRetry(retry);
  task.addCatch(onError, { errors: [Errors.ALL], resultPath: '$.error' });
  return task;
}

/**
 * After staging: a weights version is recorded at once (`recordWeights`); an image version is
 * built first, then recorded (`build`, then `recordImage`).
 */
export function afterStaging(scope: Construct, config: Config, build: ModelBuild, onError: State, recordImage: State, recordWeights: State): State {
  return new Choice(scope, 'Does the template load its weights from an input?')
    .when(Condition.stringEquals('$.staged.kind', 'weights'), recordWeights)
    .otherwise(buildSteps(scope, config, build, onError, recordImage));
}

/**
 * The build: one task (docker), or a choice on the staged archive's size between Lambda
 * compute and EC2 compute (append). Each is retried only when the concurrent-build quota
 * refuses StartBuild: a failed build is never retried, it would push a second image.
 */
function buildSteps(scope: Construct, config: Config, build: ModelBuild, onError: State, then: State): State {
  const task = (name: string, project: IProject) => {
    const step = guarded(buildTask(scope, config, name, project), onError, [BUILD_QUOTA_RETRY]);
    step.next(then);
    return step;
  };
  if (!build.lambdaProject) return task('Build and push the model image', build.project);
  return new Choice(scope, 'Does the archive fit Lambda compute?')
    .when(
      Condition.and(
        Condition.numberLessThanEquals('$.staged.size', build.lambdaComputeMaxBytes),
        // Copying a multi-gigabyte template from another registry may not fit 15 minutes.
        Condition.booleanEquals('$.staged.copies_template', false),
      ),
      task('Build and push the model image on Lambda compute', build.lambdaProject),
    )
    .otherwise(task('Build and push the model image on EC2 compute', build.project));
}

/** startBuild.sync; the result is trimmed to the build id and the pushed image. */
function buildTask(scope: Construct, config: Config, name: string, project: IProject): CodeBuildStartBuild {
  // The build environment's per-build part, as stage-weights produced it (lambdas/shared/build-env.ts).
  const overrides = Object.fromEntries(
    BUILD_OVERRIDE_NAMES.map((n) => [n, { type: BuildEnvironmentVariableType.PLAINTEXT, value: JsonPath.stringAt(`$.staged.build_env.${n}`) }]),
  );
  return new CodeBuildStartBuild(scope, name, {
    project,
    integrationPattern: IntegrationPattern.RUN_JOB,
    environmentVariablesOverride: overrides,
    resultSelector: {
      'id.$': '$.Build.Id',
      'digest.$': "$.Build.ExportedEnvironmentVariables[?(@.Name == 'IMAGE_DIGEST')].Value",
      'image.$': "$.Build.ExportedEnvironmentVariables[?(@.Name == 'IMAGE_URI')].Value",
      'serving_image.$': "$.Build.ExportedEnvironmentVariables[?(@.Name == 'IMAGE_SERVING_URI')].Value",
    },
    resultPath: '$.build',
    // The build and its wait in CodeBuild's queue (infra/constructs/build.ts).
    taskTimeout: Timeout.duration(buildTimeouts(config).task),
  });
}

