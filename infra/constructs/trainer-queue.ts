/**
 * The trainer queue in the stack: the trainer-queue function, the workflow's slot states, and
 * the rule that frees a slot when an execution ends outside the workflow's own steps (stopped,
 * failed, timed out). The queue itself lives in the trainings table (lambdas/shared/trainer-queue/).
 */
import { Duration } from 'aws-cdk-lib';
import { Rule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import {
  Errors,
  IntegrationPattern,
  JsonPath,
  Pass,
  type RetryProps,
  type State,
  type StateMachine,
  TaskInput,
  Timeout,
} from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { HouseFunction } from './function.ts';

export interface TrainerQueueProps {
  readonly config: Config;
}

/** The execution statuses that end an execution: each frees its slot (idempotent). */
export const EXECUTION_ENDED = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'] as const;

export class TrainerQueue extends Construct {
  readonly fn: HouseFunction;
  private readonly config: Config;

  constructor(scope: Construct, id: string, props: TrainerQueueProps) {
    super(scope, id);
    this.config = props.config;
    // Its needs (the table, waking a waiter by its token, the lease check) are declared in
    // infra/functions.ts like every function's.
    this.fn = new HouseFunction(this, 'TrainerQueue', { name: 'trainer-queue', config: props.config });
  }

  /**
   * "Wait for a free slot on the trainer": a callback task whose token is completed when the
   * training gets a slot (its grant lands in `$.slot`). Like the trainer wait it is a loop: each
   * wait lasts `timeouts.queue_poll_seconds`, then the training looks for itself again (a lost
   * wake-up, a crashed holder); the queue fails it after `timeouts.queue_seconds`.
   */
  waitForSlot(retry: RetryProps, onError: State): LambdaInvoke {
    const wait = new LambdaInvoke(this, 'Wait for a free slot on the trainer', {
      lambdaFunction: this.fn,
      integrationPattern: IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: TaskInput.fromObject({
        action: 'acquire',
        training_id: JsonPath.stringAt('$.training_id'),
        task_token: JsonPath.taskToken,
        execution: JsonPath.stringAt('$$.Execution.Id'),
      }),
      resultPath: '$.slot',
      taskTimeout: Timeout.duration(Duration.seconds(this.config.timeouts.queue_poll_seconds)),
      retryOnServiceExceptions: false,
    });
    const again = new Pass(this, 'Keep waiting for a free slot');
    again.next(wait);
    wait.addCatch(again, { errors: [Errors.TIMEOUT], resultPath: '$.wait_error' });
    wait.addRetry(retry);
    wait.addCatch(onError, { errors: [Errors.ALL], resultPath: '$.error' });
    return wait;
  }

  /** Frees the training's slot and wakes the next waiter; `resultPath` keeps what the path carries. */
  freeSlot(name: string, retry: RetryProps, onError: State, errorPath = '$.error'): LambdaInvoke {
    const task = new LambdaInvoke(this, name, {
      lambdaFunction: this.fn,
      payload: TaskInput.fromObject({ action: 'release', training_id: JsonPath.stringAt('$.training_id') }),
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      resultPath: JsonPath.DISCARD,
      taskTimeout: Timeout.duration(Duration.seconds(this.config.timeouts.step_seconds)),
    });
    task.addRetry(retry);
    task.addCatch(onError, { errors: [Errors.ALL], resultPath: errorPath });
    return task;
  }

  /**
   * Every end of an execution frees its slot, also an end no step of ours saw (StopExecution
   * from outside, an execution timeout, a runtime error). If this event is lost, the lease
   * check against DescribeExecution (the `execution-status` need) reclaims the slot when
   * someone waits for it.
   */
  watch(stateMachine: StateMachine): void {
    const rule = new Rule(this, 'ExecutionEnded', {
      description: 'Frees the trainer slot of a training whose execution ended',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: { stateMachineArn: [stateMachine.stateMachineArn], status: [...EXECUTION_ENDED] },
      },
    });
    rule.addTarget(new LambdaFunction(this.fn, { retryAttempts: 8, maxEventAge: Duration.hours(6) }));
  }
}
