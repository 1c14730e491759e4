/**
 * The training workflow: a Standard state machine (task tokens and `.sync` need Standard) that
 * reads as sentences. JSONPath only, no variables: the local executor ignores JSONata and
 * `Assign`, and defaults a Task without a timeout to 60 s, so every Task sets one.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { BuildEnvironmentVariableType, type IProject } from 'aws-cdk-lib/aws-codebuild';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import {
  type Chain,
  Choice,
  Condition,
  DefinitionBody,
  Errors,
  Fail,
  IntegrationPattern,
  JsonPath,
  LogLevel,
  type RetryProps,
  StateMachine,
  StateMachineType,
  Succeed,
  type State,
  type TaskStateBase,
  TaskInput,
  Timeout,
} from 'aws-cdk-lib/aws-stepfunctions';
import { CodeBuildStartBuild, LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { BUILD_OVERRIDE_NAMES } from '#shared/build-env';
import type { Config } from '#shared/config';
import { inputPath, RUN_PATH } from '#shared/execution';
import { buildTimeouts, type ModelBuild } from './build.ts';
import type { Storage } from './storage.ts';
import { sagemakerTrainers } from '#shared/trainers/sagemaker/training-jobs';
import { SageMakerTraining } from './training-jobs.ts';
import { HouseFunction, type HandlerName } from './function.ts';
import { BUILD_QUOTA_RETRY, TRAINER_BUSY_RETRY, TRANSIENT_RETRY, webhookRetry } from './retries.ts';
import { TrainerQueue } from './trainer-queue.ts';

export interface TrainingWorkflowProps {
  readonly config: Config;
  /** The data bucket a SageMaker job's role reads and writes. */
  readonly storage: Storage;
  readonly build: ModelBuild;
  readonly notify: HouseFunction;
}

/** The house rules of every Task: its retries, then a catch-all to where failures go. */
function guarded<T extends TaskStateBase>(task: T, onError: State, retries: RetryProps[] = [TRANSIENT_RETRY]): T {
  for (const retry of retries) task.addRetry(retry);
  task.addCatch(onError, { errors: [Errors.ALL], resultPath: '$.error' });
  return task;
}

const trainingId = JsonPath.stringAt(inputPath('training_id'));

export class TrainingWorkflow extends Construct {
  readonly stateMachine: StateMachine;
  readonly logGroup: LogGroup;
  readonly functions: Record<'record' | 'startTrainer' | 'checkTrainer' | 'stageWeights', HouseFunction>;
  /** Present when a sagemaker trainer is configured. */
  sagemaker?: SageMakerTraining;
  /** Slots and queue per trainer, in front of the train step. */
  readonly queue: TrainerQueue;

  private readonly config: Config;

  constructor(scope: Construct, id: string, props: TrainingWorkflowProps) {
    super(scope, id);
    this.config = props.config;
    this.functions = this.createFunctions(props.config);
    // 'Capacity' is the id deployed stacks' resources carry: a new one would replace the
    // function and delete its log group.
    this.queue = new TrainerQueue(this, 'Capacity', { config: props.config });
    this.logGroup = new LogGroup(this, 'Logs', {
      // The prefix lets Step Functions write without growing the log group's resource policy.
      logGroupName: `/aws/vendedlogs/states/dreambooth-${this.node.addr}`,
      retention: RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      stateMachineType: StateMachineType.STANDARD,
      definitionBody: DefinitionBody.fromChainable(this.definition(props)),
      tracingEnabled: true,
      logs: { destination: this.logGroup, level: LogLevel.ALL, includeExecutionData: false },
    });
    this.sagemaker?.grantRun(this.stateMachine);
    this.queue.watch(this.stateMachine);
  }

  /** A slot on the trainer, the trainer's run, the weights staged, the image built, the version recorded. */
  private definition(props: TrainingWorkflowProps): Chain {
    const { recordFailure, trainerFailure } = this.failurePath(props.notify);
    const succeeded = new Succeed(this, 'Training succeeded');
    const waitForTrainer = this.trainerWait();
    const askTrainer = this.trainerCheck(trainerFailure, waitForTrainer);
    const waitForSlot = this.queue.waitForSlot(TRANSIENT_RETRY, trainerFailure);
    const freeSlot = this.queue.freeSlot('Free the trainer slot', TRANSIENT_RETRY, trainerFailure);
    const stage = guarded(
      this.invoke(this.functions.stageWeights, 'Stage the weights in S3', {
        training_id: trainingId,
        output_url: JsonPath.stringAt(`${RUN_PATH}.output_url`),
      }, '$.staged', Duration.seconds(this.config.timeouts.stage_seconds)),
      recordFailure,
    );
    freeSlot.next(stage);
    const finished = new Choice(this, 'Has the trainer finished?')
      .when(Condition.stringEquals(`${RUN_PATH}.status`, 'succeeded'), freeSlot)
      .otherwise(waitForTrainer);
    askTrainer.next(finished);
    const recordVersion = this.successPath(props.notify, recordFailure, succeeded);
    stage.next(this.buildSteps(props.build, recordFailure, recordVersion));
    waitForTrainer.next(freeSlot);
    // The first state: the wait for a slot also refuses a training canceled before it ran.
    return waitForSlot.next(this.trainerStart(props, trainerFailure, freeSlot, waitForTrainer));
  }

  /**
   * Failure path: record, tell the client, fail. Its own errors end the execution, not a loop.
   * A failure while the training may hold a trainer slot goes to `trainerFailure`, which frees
   * the slot first (its own failure keeps the original error in $.error and goes on to record it).
   */
  private failurePath(notify: HouseFunction): { recordFailure: State; trainerFailure: State } {
    const failed = new Fail(this, 'Training failed', { error: 'TrainingFailed', cause: 'See the training record.' });
    const sendFailureWebhook = this.webhookStep(notify, 'Send the failure webhook', 'Record the failure webhook as given up', failed);
    const recordFailure = guarded(
      this.invoke(this.functions.record, 'Record the failure', {
        action: 'failure',
        training_id: trainingId,
        error: JsonPath.objectAt('$.error'),
      }),
      failed,
    );
    recordFailure.next(sendFailureWebhook);
    sendFailureWebhook.next(failed);
    const trainerFailure = this.queue.freeSlot('Free the trainer slot after a failure', TRANSIENT_RETRY, recordFailure, '$.release_error');
    trainerFailure.next(recordFailure);
    return { recordFailure, trainerFailure };
  }

  /** Start the trainer on the slot's server and wait for its callback: its result goes to RUN_PATH. */
  private trainerWait(): LambdaInvoke {
    const { timeouts } = this.config;
    return new LambdaInvoke(this, 'Start the trainer and wait for its callback', {
      lambdaFunction: this.functions.startTrainer,
      integrationPattern: IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: TaskInput.fromObject({
        training_id: trainingId,
        task_token: JsonPath.taskToken,
        server: JsonPath.stringAt('$.slot.server'),
        granted_at: JsonPath.stringAt('$.slot.granted_at'),
      }),
      resultPath: RUN_PATH,
      heartbeatTimeout: Timeout.duration(Duration.seconds(timeouts.callback_heartbeat_seconds)),
      taskTimeout: Timeout.duration(Duration.seconds(timeouts.callback_poll_seconds)),
      retryOnServiceExceptions: false,
    });
  }

  /** A late or lost callback is not a failure: the wait is a loop that asks the trainer (its answer to RUN_PATH). */
  private trainerCheck(trainerFailure: State, waitForTrainer: LambdaInvoke): LambdaInvoke {
    const askTrainer = guarded(
      this.invoke(this.functions.checkTrainer, 'Ask the trainer how it is doing', {
        training_id: trainingId,
        execution_start_time: JsonPath.stringAt('$$.Execution.StartTime'),
      }, RUN_PATH),
      trainerFailure,
    );
    waitForTrainer.addCatch(askTrainer, { errors: [Errors.TIMEOUT, Errors.HEARTBEAT_TIMEOUT], resultPath: '$.wait_error' });
    guarded(waitForTrainer, trainerFailure, [TRANSIENT_RETRY, TRAINER_BUSY_RETRY]);
    return askTrainer;
  }

  /** Record the version, then send the completion webhook; returns the first of them. */
  private successPath(notify: HouseFunction, recordFailure: State, succeeded: State): State {
    const recordVersion = guarded(
      this.invoke(this.functions.record, 'Record the model version', {
        action: 'version',
        training_id: trainingId,
        build: JsonPath.objectAt('$.build'),
      }),
      recordFailure,
    );
    // The version is recorded by now: a failure to record the give-up must not fail the training.
    const sendWebhook = this.webhookStep(notify, 'Send the completion webhook', 'Record the webhook as given up', succeeded);
    recordVersion.next(sendWebhook).next(succeeded);
    return recordVersion;
  }

  /**
   * The train step once the training holds a slot: the trainer's wait or, with a sagemaker
   * trainer configured, a choice that runs a SageMaker job in the slot, like any trainer's run.
   */
  private trainerStart(props: TrainingWorkflowProps, trainerFailure: State, freeSlot: State, waitForTrainer: State): State {
    if (sagemakerTrainers(this.config).length === 0) return waitForTrainer;
    this.sagemaker = new SageMakerTraining(this, 'SageMaker', {
      config: this.config,
      storage: props.storage,
      onError: trainerFailure,
      then: freeSlot,
      otherwise: waitForTrainer,
    });
    // The functions' grant is their `job-outputs` need (infra/needs.ts).
    for (const grantee of props.build.projects) this.sagemaker.grantReadOutputs(grantee);
    return this.sagemaker.start;
  }

  /**
   * Send the webhook on its retry schedule; when every retry failed, record that it was given
   * up and go on to `then` (the execution's end), whatever recording does.
   */
  private webhookStep(notify: HouseFunction, sendName: string, givenUpName: string, then: State) {
    const givenUp = guarded(
      this.invoke(this.functions.record, givenUpName, { action: 'webhook_given_up', training_id: trainingId, error: JsonPath.objectAt('$.error') }),
      then,
    );
    givenUp.next(then);
    return guarded(this.invoke(notify, sendName, { training_id: trainingId, event: 'completed' }), givenUp, [TRANSIENT_RETRY, webhookRetry(this.config)]);
  }

  /**
   * The build: one task (docker), or a choice on the staged archive's size between Lambda
   * compute and EC2 compute (append). Each is retried only when the concurrent-build quota
   * refuses StartBuild: a failed build is never retried, it would push a second image.
   */
  private buildSteps(build: ModelBuild, onError: State, then: State): State {
    const task = (name: string, project: IProject) => {
      const step = guarded(this.buildTask(name, project), onError, [BUILD_QUOTA_RETRY]);
      step.next(then);
      return step;
    };
    if (!build.lambdaProject) return task('Build and push the model image', build.project);
    return new Choice(this, 'Does the archive fit Lambda compute?')
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

  /** A Lambda step whose output is the function's own result (no SDK envelope). */
  private invoke(
    fn: HouseFunction,
    name: string,
    payload: Record<string, unknown>,
    resultPath: string = JsonPath.DISCARD,
    timeout: Duration = Duration.seconds(this.config.timeouts.step_seconds),
  ): LambdaInvoke {
    return new LambdaInvoke(this, name, {
      lambdaFunction: fn,
      payload: TaskInput.fromObject(payload),
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      resultPath,
      taskTimeout: Timeout.duration(timeout),
    });
  }

  /** startBuild.sync; the result is trimmed to the build id and the pushed image. */
  private buildTask(name: string, project: IProject): CodeBuildStartBuild {
    // The build environment's per-build part, as stage-weights produced it (lambdas/shared/build-env.ts).
    const overrides = Object.fromEntries(
      BUILD_OVERRIDE_NAMES.map((n) => [
        n,
        { type: BuildEnvironmentVariableType.PLAINTEXT, value: JsonPath.stringAt(`$.staged.build_env.${n}`) },
      ]),
    );
    return new CodeBuildStartBuild(this, name, {
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
      taskTimeout: Timeout.duration(buildTimeouts(this.config).task),
    });
  }

  /** The functions of the steps (their needs: infra/functions.ts). */
  private createFunctions(config: Config) {
    const fn = (id: string, name: HandlerName) => new HouseFunction(this, id, { name, config });
    return {
      record: fn('Record', 'record'),
      startTrainer: fn('StartTrainer', 'start-trainer'),
      checkTrainer: fn('CheckTrainer', 'check-trainer'),
      stageWeights: fn('StageWeights', 'stage-weights'),
    };
  }
}
