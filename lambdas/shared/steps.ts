/**
 * Payloads of the state machine's Task states (JSONPath). The workflow construct builds them
 * and the handlers parse them; keep both sides on these shapes.
 *
 * Execution input: { training_id, model, trainer, template }  (no secrets: readable in the console)
 * Execution name:  the training id.
 */
import * as z from './zod.ts';

export const TrainingId = z.string().check(z.regex(/^[a-z0-9]{20,40}$/, 'is not a training id'));

/** The Catch's error output: { Error, Cause }. */
const CaughtError = z.looseObject({ Error: z.optional(z.string()), Cause: z.optional(z.string()) });

/** record Lambda: "Record the training as started" / "Record the model version" / "Record the failure" / "Record the webhook as given up". */
export const RecordEvent = z.discriminatedUnion('action', [
  z.object({ action: z.literal('started'), training_id: TrainingId, execution_start_time: z.string() }),
  z.object({
    action: z.literal('version'),
    training_id: TrainingId,
    /** ResultSelector output of the build: the IMAGE_DIGEST exported variable as a one-element list. */
    build: z.object({
      id: z.string(),
      digest: z.array(z.string()).check(z.minLength(1)),
      image: z._default(z.array(z.string()), []),
    }),
  }),
  z.object({ action: z.literal('failure'), training_id: TrainingId, error: CaughtError }),
  z.object({ action: z.literal('webhook_given_up'), training_id: TrainingId, error: CaughtError }),
]);
export type RecordEvent = z.infer<typeof RecordEvent>;

/** start-trainer Lambda (.waitForTaskToken): "Start the trainer and wait for its callback". */
export const StartTrainerEvent = z.object({ training_id: TrainingId, task_token: z.string().check(z.minLength(1)) });
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
  build_env: {
    TRAINING_ID: string;
    WEIGHTS_S3_URI: string;
    TEMPLATE_IMAGE: string;
    IMAGE_REPOSITORY: string;
    IMAGE_TAG: string;
    NOTES: string;
  };
}

/** notify Lambda: "Send the completion webhook" / "Send the failure webhook". */
export const NotifyEvent = z.object({
  training_id: TrainingId,
  event: z._default(z.enum(['completed', 'start', 'output', 'logs']), 'completed'),
  /** Tells apart the sends of a repeated event (logs), so each has its own webhook-id. */
  seq: z.optional(z.string().check(z.maxLength(64))),
});

/** Error names thrown by steps; the state machine retries or catches on them. */
export const StepErrors = {
  /** Transient: retried by the state machine. */
  Transient: 'TransientError',
  /** Webhook receiver not reached or answered non-2xx (retried on the webhook schedule). */
  WebhookDeliveryFailed: 'WebhookDeliveryFailed',
  /** The trainer runs another prediction: the start is retried later. */
  TrainerBusy: 'TrainerBusy',
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
