/**
 * The training workflow: a Standard state machine (task tokens and `.sync` need Standard) that
 * reads as sentences. JSONPath only, no variables: the local executor ignores JSONata and
 * `Assign`, and defaults a Task without a timeout to 60 s, so every Task sets one.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
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
  StateMachine,
  StateMachineType,
  Succeed,
  type State,
  TaskInput,
  Timeout,
} from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { inputPath, RUN_PATH } from '#shared/execution';
import type { ModelBuild } from './build.ts';
import { afterStaging, guarded } from './workflow-build.ts';
import type { Storage } from './storage.ts';
import { sagemakerTrainers } from '#shared/trainers/sagemaker/training-jobs';
import { SageMakerTraining } from './training-jobs.ts';
import { HouseFunction, type HandlerName } from './function.ts';
import { TRAINER_BUSY_RETRY, TRANSIENT_RETRY, webhookRetry } from './retries.ts';
import { TrainerQueue } from './trainer-queue.ts';

export interface TrainingWorkflowProps {
  readonly config: Config;
  /** The data bucket a SageMaker job's role reads and writes. */
  readonly storage: Storage;
  readonly build: ModelBuild;
  readonly notify: HouseFunction;
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
    const { recordVersion, recordWeightsVersion } = this.successPath(props.notify, recordFailure, succeeded);
    stage.next(afterStaging(this, this.config, props.build, recordFailure, recordVersion, recordWeightsVersion));
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

  /** Record the version (built, or a weights version), then send the completion webhook; returns the recording steps. */
  private successPath(notify: HouseFunction, recordFailure: State, succeeded: State) {
    const recordVersion = guarded(
      this.invoke(this.functions.record, 'Record the model version', {
        action: 'version',
        training_id: trainingId,
        build: JsonPath.objectAt('$.build'),
      }),
      recordFailure,
    );
    const recordWeightsVersion = guarded(
      this.invoke(this.functions.record, 'Record the weights version', {
        action: 'weights_version',
        training_id: trainingId,
        weights: JsonPath.objectAt('$.staged.weights'),
      }),
      recordFailure,
    );
    // The version is recorded by now: a failure to record the give-up must not fail the training.
    const sendWebhook = this.webhookStep(notify, 'Send the completion webhook', 'Record the webhook as given up', succeeded);
    recordVersion.next(sendWebhook).next(succeeded);
    recordWeightsVersion.next(sendWebhook);
    return { recordVersion, recordWeightsVersion };
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
