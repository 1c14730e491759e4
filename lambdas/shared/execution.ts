/**
 * The training's execution (the state machine: infra/constructs/workflow.ts), named by the
 * training id: the input the API starts it with, and where its state keeps the trainer's result.
 */
import { TrainingId } from './steps.ts';
import * as z from './zod.ts';

/** What an execution starts with (lambdas/api/create.ts). No secrets: the console shows it. */
export const ExecutionInput = z.object({
  training_id: TrainingId,
  model: z.string(),
  /** The trainer's name (its key in the configuration): a SageMaker trainer's branch chooses on it. */
  trainer: z.string(),
  /** The template's name, for whoever reads the execution: the steps read the training's record. */
  template: z.string(),
  /** A re-template: the training whose staged weights it reuses (its run is over: no trainer runs). */
  retemplate_of: z.optional(TrainingId),
});
export type ExecutionInput = z.infer<typeof ExecutionInput>;

/** The JSONPath of an input field, as the state machine reads it: a renamed field fails to compile there. */
export const inputPath = (field: keyof ExecutionInput) => `$.${field}`;

/**
 * Where the state keeps the trainer's result (TrainerResult: status, output_url, predict_time),
 * whoever reported it: the callback, a check of the trainer, or a SageMaker job. Under a name
 * of its own: `$.trainer` is the input's trainer name.
 */
export const RUN_PATH = '$.run';
