/**
 * Payloads of the state machine's Task states (JSONPath). The workflow construct builds them
 * and the handlers parse them; keep both sides on these shapes.
 *
 * The execution's input, and where its state keeps the trainer's result: ./execution.ts.
 */
import type { BuildOverrides } from './build-env.ts';
import { TRAINING_ID } from './ids.ts';
import type { WeightsFormat } from './weights-format.ts';
import * as z from './zod.ts';

export const TrainingId = z.string().check(z.regex(TRAINING_ID, 'is not a training id'));

/** The Catch's error output: { Error, Cause }. */
const CaughtError = z.looseObject({ Error: z.optional(z.string()), Cause: z.optional(z.string()) });

/** record Lambda: "Record the model version" / "Record the failure" / "Record the webhook as given up". */
export const RecordEvent = z.discriminatedUnion('action', [
  z.object({
    action: z.literal('version'),
    training_id: TrainingId,
    /** ResultSelector output of the build: the IMAGE_DIGEST exported variable as a one-element list. */
    build: z.object({
      id: z.string(),
      digest: z.array(z.string()).check(z.minLength(1)),
      image: z._default(z.array(z.string()), []),
      /** The IMAGE_SERVING_URI exported variable: the version's SageMaker variant. */
      serving_image: z.optional(z.array(z.string())),
    }),
  }),
  z.object({
    action: z.literal('weights_version'),
    training_id: TrainingId,
    /** stage-weights' `weights`: the content-addressed copy of the output. */
    weights: z.object({
      key: z.string().check(z.regex(/^weights\/[0-9a-f]{64}$/, 'is not a weights key')),
      size: z.number().check(z.int(), z.nonnegative()),
      sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/, 'is not a hex sha256')),
    }),
  }),
  z.object({ action: z.literal('failure'), training_id: TrainingId, error: CaughtError }),
  z.object({ action: z.literal('webhook_given_up'), training_id: TrainingId, error: CaughtError }),
]);
export type RecordEvent = z.infer<typeof RecordEvent>;

/** start-trainer Lambda (.waitForTaskToken): "Start the trainer and wait for its callback". */
export const StartTrainerEvent = z.object({
  training_id: TrainingId,
  task_token: z.string().check(z.minLength(1)),
  /** The pool server of the training's slot (null without a pool). */
  server: z.optional(z.nullable(z.url())),
  /** When the slot was granted: the training's started_at, so that starts keep queue order. */
  granted_at: z.optional(z.nullable(z.string())),
});

/** trainer-queue Lambda: "Wait for a free slot on the trainer" (.waitForTaskToken) and "Free the trainer slot". */
export const QueueEvent = z.discriminatedUnion('action', [
  z.object({
    action: z.literal('acquire'),
    training_id: TrainingId,
    task_token: z.string().check(z.minLength(1)),
    /** `$$.Execution.Id`: the lease of a slot is checked against this execution's status. */
    execution: z.string().check(z.minLength(1)),
  }),
  z.object({ action: z.literal('release'), training_id: TrainingId }),
]);
export type QueueEvent = z.infer<typeof QueueEvent>;

/** EventBridge's "Step Functions Execution Status Change" (and local mode's equivalent). */
export const ExecutionStatusChange = z.object({
  'detail-type': z.literal('Step Functions Execution Status Change'),
  detail: z.looseObject({ name: z.string(), status: z.string(), executionArn: z.string() }),
});
/** What the callback route sends with SendTaskSuccess, and what check-trainer returns on success. */
export const TrainerResult = z.object({
  status: z.literal('succeeded'),
  output_url: z.url(),
  predict_time: z._default(z.nullable(z.number()), null),
});
export type TrainerResult = z.infer<typeof TrainerResult>;

/** check-trainer Lambda: "Ask the trainer how it is doing" after a callback wait timed out. */
export const CheckTrainerEvent = z.object({ training_id: TrainingId, execution_start_time: z.string() });
export const CheckTrainerResult = z.union([TrainerResult, z.object({ status: z.literal('running') })]);
export type CheckTrainerResult = z.infer<typeof CheckTrainerResult>;

/** stage-weights Lambda: "Stage the weights in S3". Input: training id and the trainer's output URL. */
export const StageWeightsEvent = z.object({ training_id: TrainingId, output_url: z.url() });
/** Its result also carries the CodeBuild environment of the build step. */
export interface StageWeightsResult {
  bucket: string;
  key: string;
  size: number;
  entries: number;
  /**
   * The build must copy the template's layers into the model's repository (another registry,
   * and no earlier version of the model from this template): too slow for Lambda compute.
   */
  copies_template: boolean;
  /** zip, tar, tar.gz or file (one file, installed under its name). */
  format: WeightsFormat;
  /** The build's per-build environment (lambdas/shared/build-env.ts), passed by the state machine. */
  build_env: BuildOverrides;
  /**
   * `weights`: the template loads the weights from an input, and the version is recorded
   * without a build (the state machine's choice); `image`: the build makes the version's image.
   */
  kind: 'image' | 'weights';
  /** With `kind: 'weights'`: the output's content-addressed copy (lambdas/shared/weights-version.ts). */
  weights?: StagedWeights;
}

export interface StagedWeights {
  key: string;
  size: number;
  sha256: string;
}

/** notify Lambda: "Send the completion webhook" / "Send the failure webhook". */
export const NotifyEvent = z.object({
  training_id: TrainingId,
  event: z._default(z.enum(['completed', 'start', 'output', 'logs']), 'completed'),
  /** Tells apart the sends of a repeated event (logs), so each has its own webhook-id. */
  seq: z.optional(z.string().check(z.maxLength(64))),
});

/** prepare-training-job Lambda: "Prepare the SageMaker job" (again, with `retry`, after a capacity failure). */
export const PrepareJobEvent = z.object({ training_id: TrainingId, retry: z._default(z.boolean(), false) });
/** What the job state reads (`$.job`). */
export interface JobPlan {
  name: string;
  image: string;
  /**
   * The training's callback URL, with its secret, for the job's environment (CALLBACK_URL_ENV):
   * the one secret here, seen by those who may read the execution's history or describe the
   * job (the account's operators), never by another job, which can read every request channel.
   */
  callback_url: string;
  request_uri: string;
  output_uri: string;
  checkpoint_uri: string;
  resource_config: { InstanceType: string; InstanceCount: 1; VolumeSizeInGB: number; KeepAlivePeriodInSeconds?: number };
  stopping_condition: { MaxRuntimeInSeconds: number; MaxWaitTimeInSeconds?: number };
  spot: boolean;
  /** The wait before the next attempt, should this one find no capacity. */
  retry_wait_seconds: number;
}

/** Error names thrown by steps; the state machine retries or catches on them. */
export const StepErrors = {
  /** Transient: retried by the state machine. */
  Transient: 'TransientError',
  /** Webhook receiver not reached or answered non-2xx (retried on the webhook schedule). */
  WebhookDeliveryFailed: 'WebhookDeliveryFailed',
  /**
   * The trainer's server refused the run although the queue gave us its slot: it is still
   * finishing the previous run (a Cog server answers its terminal webhook first) or something
   * outside this service uses it. Retried briefly.
   */
  TrainerBusy: 'TrainerBusy',
  /** No slot came free within timeouts.queue_seconds. */
  QueueTimeout: 'QueueTimeout',
  /** Permanent failures: straight to the failure path. */
  TrainerFailed: 'TrainerFailed',
  TrainingDeadlineExceeded: 'TrainingDeadlineExceeded',
  BadArchive: 'BadArchive',
  TrainingCanceled: 'TrainingCanceled',
} as const;

export class StepError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}
