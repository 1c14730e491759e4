/**
 * The training workflow: a Standard state machine (task tokens and `.sync` need Standard) that
 * reads as sentences. JSONPath only, no variables: the local executor ignores JSONata and
 * `Assign`, and defaults a Task without a timeout to 60 s, so every Task sets one.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { BuildEnvironmentVariableType, type IProject } from 'aws-cdk-lib/aws-codebuild';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import {
  Choice,
  Condition,
  DefinitionBody,
  Errors,
  Fail,
  IntegrationPattern,
  JitterType,
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
import type { Config } from '#shared/config';
import { StepErrors } from '#shared/steps';
import { buildTimeouts, type ModelBuild } from './build.ts';
import type { Storage } from './storage.ts';
import { sagemakerTrainers } from '#shared/trainers/sagemaker/training-jobs';
import { SageMakerTraining } from './sagemaker.ts';
import { HouseFunction, type HandlerName } from './function.ts';
import { BUILD_QUOTA_RETRY, TRAINER_BUSY_RETRY, TRANSIENT_RETRY } from './retries.ts';
import { TrainerCapacity } from './queue.ts';

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

const trainingId = JsonPath.stringAt('$.training_id');

export class TrainingWorkflow extends Construct {
  readonly stateMachine: StateMachine;
  readonly logGroup: LogGroup;
  readonly functions: Record<'record' | 'startTrainer' | 'checkTrainer' | 'stageWeights', HouseFunction>;
  /** Present when a sagemaker trainer is configured. */
  sagemaker?: SageMakerTraining;
  /** Slots and queue per trainer, in front of the train step. */
  readonly capacity: TrainerCapacity;

  private readonly config: Config;

  constructor(scope: Construct, id: string, props: TrainingWorkflowProps) {
    super(scope, id);
    this.config = props.config;
    this.functions = this.createFunctions(props.config);
    this.capacity = new TrainerCapacity(this, 'Capacity', { config: props.config });
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
    this.capacity.watch(this.stateMachine);
  }

  private definition(props: TrainingWorkflowProps) {
    const { record, startTrainer, checkTrainer, stageWeights } = this.functions;
    const { timeouts, webhooks } = this.config;
    const webhookRetry: RetryProps = {
      errors: [StepErrors.WebhookDeliveryFailed],
      interval: Duration.seconds(webhooks.retry_interval_seconds),
      backoffRate: webhooks.retry_backoff_rate,
      maxAttempts: webhooks.retry_max_attempts,
      maxDelay: Duration.seconds(webhooks.retry_max_delay_seconds),
      jitterStrategy: JitterType.FULL,
    };

    // Failure path: record, tell the client, fail. Its own errors end the execution, not a loop.
    const failed = new Fail(this, 'Training failed', { error: 'TrainingFailed', cause: 'See the training record.' });
    const sendFailureWebhook = this.webhookStep(props.notify, record, webhookRetry, 'Send the failure webhook', 'Record the failure webhook as given up', failed);
    const recordFailure = guarded(
      this.invoke(record, 'Record the failure', {
        action: 'failure',
        training_id: trainingId,
        error: JsonPath.objectAt('$.error'),
      }),
      failed,
    );
    recordFailure.next(sendFailureWebhook);
    sendFailureWebhook.next(failed);
    // A failure while the training may hold a trainer slot frees it first (its own failure
    // keeps the original error in $.error and goes on to record it).
    const trainerFailure = this.capacity.freeSlot('Free the trainer slot after a failure', TRANSIENT_RETRY, recordFailure, '$.release_error');
    trainerFailure.next(recordFailure);

    // Success path.
    const succeeded = new Succeed(this, 'Training succeeded');
    const waitForTrainer = new LambdaInvoke(this, 'Start the trainer and wait for its callback', {
      lambdaFunction: startTrainer,
      integrationPattern: IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: TaskInput.fromObject({
        training_id: trainingId,
        task_token: JsonPath.taskToken,
        server: JsonPath.stringAt('$.slot.server'),
        granted_at: JsonPath.stringAt('$.slot.granted_at'),
      }),
      resultPath: '$.trainer',
      heartbeatTimeout: Timeout.duration(Duration.seconds(timeouts.callback_heartbeat_seconds)),
      taskTimeout: Timeout.duration(Duration.seconds(timeouts.callback_poll_seconds)),
      retryOnServiceExceptions: false,
    });
    const askTrainer = guarded(
      this.invoke(checkTrainer, 'Ask the trainer how it is doing', {
        training_id: trainingId,
        execution_start_time: JsonPath.stringAt('$$.Execution.StartTime'),
      }, '$.trainer'),
      trainerFailure,
    );
    // A late or lost callback is not a failure: the wait is a loop that polls the trainer.
    waitForTrainer.addCatch(askTrainer, {
      errors: [Errors.TIMEOUT, Errors.HEARTBEAT_TIMEOUT],
      resultPath: '$.wait_error',
    });
    guarded(waitForTrainer, trainerFailure, [TRANSIENT_RETRY, TRAINER_BUSY_RETRY]);
    const waitForSlot = this.capacity.waitForSlot(TRANSIENT_RETRY, trainerFailure);
    const freeSlot = this.capacity.freeSlot('Free the trainer slot', TRANSIENT_RETRY, trainerFailure);

    const stage = guarded(
      this.invoke(stageWeights, 'Stage the weights in S3', {
        training_id: trainingId,
        output_url: JsonPath.stringAt('$.trainer.output_url'),
      }, '$.staged', Duration.seconds(timeouts.stage_seconds)),
      recordFailure,
    );
    freeSlot.next(stage);
    const finished = new Choice(this, 'Has the trainer finished?')
      .when(Condition.stringEquals('$.trainer.status', 'succeeded'), freeSlot)
      .otherwise(waitForTrainer);
    askTrainer.next(finished);

    const recordVersion = guarded(
      this.invoke(record, 'Record the model version', {
        action: 'version',
        training_id: trainingId,
        build: JsonPath.objectAt('$.build'),
      }),
      recordFailure,
    );
    // The version is recorded by now: a failure to record the give-up must not fail the training.
    const sendWebhook = this.webhookStep(props.notify, record, webhookRetry, 'Send the completion webhook', 'Record the webhook as given up', succeeded);

    recordVersion.next(sendWebhook).next(succeeded);
    stage.next(this.buildSteps(props.build, recordFailure, recordVersion));
    waitForTrainer.next(freeSlot);
    // The first state: the wait for a slot also refuses a training canceled before it ran.
    if (sagemakerTrainers(this.config).length === 0) return waitForSlot.next(waitForTrainer);
    // A SageMaker job runs in the slot it was granted, like any other trainer's run.
    this.sagemaker = new SageMakerTraining(this, 'SageMaker', {
      config: this.config,
      storage: props.storage,
      onError: trainerFailure,
      then: freeSlot,
      otherwise: waitForTrainer,
    });
    // The functions' grant is their `job-outputs` need (infra/functions.ts).
    for (const grantee of props.build.projects) this.sagemaker.grantReadOutputs(grantee);
    return waitForSlot.next(this.sagemaker.start);
  }

  /**
   * Send the webhook on its retry schedule; when every retry failed, record that it was given
   * up and go on to `then` (the execution's end), whatever recording does.
   */
  private webhookStep(notify: HouseFunction, record: HouseFunction, retry: RetryProps, sendName: string, givenUpName: string, then: State) {
    const givenUp = guarded(
      this.invoke(record, givenUpName, { action: 'webhook_given_up', training_id: trainingId, error: JsonPath.objectAt('$.error') }),
      then,
    );
    givenUp.next(then);
    return guarded(this.invoke(notify, sendName, { training_id: trainingId, event: 'completed' }), givenUp, [TRANSIENT_RETRY, retry]);
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
    const names = ['TRAINING_ID', 'WEIGHTS_S3_URI', 'WEIGHTS_FORMAT', 'TEMPLATE_IMAGE', 'IMAGE_REPOSITORY', 'IMAGE_TAG', 'NOTES_S3_URI'];
    const overrides = Object.fromEntries(
      names.map((n) => [
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
