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
import { ENV } from '#shared/env';
import { StepErrors } from '#shared/steps';
import type { ModelBuild } from './build.ts';
import { HouseFunction, type HandlerName } from './function.ts';
import type { Secrets } from './secrets.ts';
import { PREFIX, type Storage } from './storage.ts';

export interface TrainingWorkflowProps {
  readonly config: Config;
  readonly storage: Storage;
  readonly secrets: Secrets;
  readonly build: ModelBuild;
  readonly notify: HouseFunction;
}

/** Errors worth another try of the same step. */
const TRANSIENT_RETRY: RetryProps = {
  errors: [
    'Lambda.ServiceException',
    'Lambda.AWSLambdaException',
    'Lambda.SdkClientException',
    'Lambda.TooManyRequestsException',
    StepErrors.Transient,
  ],
  interval: Duration.seconds(2),
  backoffRate: 2,
  maxAttempts: 4,
  maxDelay: Duration.seconds(30),
  jitterStrategy: JitterType.FULL,
};

/**
 * StartBuild refused by the concurrent-build quota. Only that: a failed build is never retried,
 * it would push a second image.
 */
const BUILD_QUOTA_RETRY: RetryProps = {
  errors: ['CodeBuild.AccountLimitExceededException'],
  interval: Duration.seconds(30),
  backoffRate: 2,
  maxAttempts: 6,
  maxDelay: Duration.seconds(300),
  jitterStrategy: JitterType.FULL,
};

/**
 * The trainer is busy with another run (a Cog server runs one prediction at a time): try the
 * start again later, for up to about an hour, before giving up.
 */
const TRAINER_BUSY_RETRY: RetryProps = {
  errors: [StepErrors.TrainerBusy],
  interval: Duration.seconds(30),
  backoffRate: 2,
  maxAttempts: 8,
  maxDelay: Duration.seconds(600),
  jitterStrategy: JitterType.FULL,
};

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

  private readonly config: Config;

  constructor(scope: Construct, id: string, props: TrainingWorkflowProps) {
    super(scope, id);
    this.config = props.config;
    this.functions = this.createFunctions(props);
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

    // Success path.
    const succeeded = new Succeed(this, 'Training succeeded');
    const recordStarted = guarded(
      this.invoke(record, 'Record the training as started', {
        action: 'started',
        training_id: trainingId,
        execution_start_time: JsonPath.stringAt('$$.Execution.StartTime'),
      }),
      recordFailure,
    );
    const waitForTrainer = new LambdaInvoke(this, 'Start the trainer and wait for its callback', {
      lambdaFunction: startTrainer,
      integrationPattern: IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: TaskInput.fromObject({ training_id: trainingId, task_token: JsonPath.taskToken }),
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
      recordFailure,
    );
    // A late or lost callback is not a failure: the wait is a loop that polls the trainer.
    waitForTrainer.addCatch(askTrainer, {
      errors: [Errors.TIMEOUT, Errors.HEARTBEAT_TIMEOUT],
      resultPath: '$.wait_error',
    });
    guarded(waitForTrainer, recordFailure, [TRANSIENT_RETRY, TRAINER_BUSY_RETRY]);

    const stage = guarded(
      this.invoke(stageWeights, 'Stage the weights in S3', {
        training_id: trainingId,
        output_url: JsonPath.stringAt('$.trainer.output_url'),
      }, '$.staged', Duration.seconds(timeouts.stage_seconds)),
      recordFailure,
    );
    const finished = new Choice(this, 'Has the trainer finished?')
      .when(Condition.stringEquals('$.trainer.status', 'succeeded'), stage)
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
    return recordStarted.next(waitForTrainer).next(stage);
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
        Condition.numberLessThanEquals('$.staged.size', build.lambdaComputeMaxBytes),
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
    const names = ['TRAINING_ID', 'WEIGHTS_S3_URI', 'TEMPLATE_IMAGE', 'IMAGE_REPOSITORY', 'IMAGE_TAG', 'NOTES'];
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
      taskTimeout: Timeout.duration(Duration.minutes(this.config.timeouts.build_minutes)),
    });
  }

  private createFunctions(props: TrainingWorkflowProps) {
    const { config, storage, secrets, build } = props;
    const make = (id: string, name: HandlerName, extra: Partial<{ timeout: Duration; memorySize: number; environment: Record<string, string> }> = {}) => {
      const fn = new HouseFunction(this, id, {
        name,
        config,
        tableName: storage.table.tableName,
        bucketName: storage.bucket.bucketName,
        ...extra,
      });
      storage.grantTableReadWrite(fn);
      return fn;
    };
    const record = make('Record', 'record');
    storage.grantObjects(record, PREFIX.staged, ['s3:GetObject']);
    // The build's log tail goes into the error of a failed build.
    build.logGroup.grant(record, 'logs:GetLogEvents');

    const startTrainer = make('StartTrainer', 'start-trainer', {
      environment: { [ENV.callbackKeySecret]: secrets.callbackKey.secretArn },
    });
    secrets.callbackKey.grantRead(startTrainer);
    const checkTrainer = make('CheckTrainer', 'check-trainer');
    for (const secret of secrets.trainerSecrets) {
      secret.grantRead(startTrainer);
      secret.grantRead(checkTrainer);
    }

    const stageWeights = make('StageWeights', 'stage-weights', {
      timeout: Duration.seconds(Math.min(config.timeouts.stage_seconds, 900)),
      memorySize: 1024,
      environment: { [ENV.registryHost]: build.registryHost, REPOSITORY_PREFIX: build.repositoryPrefix },
    });
    storage.grantObjects(stageWeights, PREFIX.staged, ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload']);
    return { record, startTrainer, checkTrainer, stageWeights };
  }
}
