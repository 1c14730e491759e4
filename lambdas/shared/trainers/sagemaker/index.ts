/**
 * `sagemaker`: the trainer's Cog image, unchanged, run as one SageMaker training job per
 * training in the stack's account (infra/constructs/training-jobs.ts; the state machine starts and
 * awaits the job). SageMaker's usual first quota is one instance of a GPU type.
 */
import type { Backend } from '../backend.ts';
import { sagemakerConfig, type SageMakerTrainerConfig } from './config.ts';
import { SageMakerTrainer } from './trainer.ts';
import { jobFailureMessage, jobOutputKey, missingJobOutput } from './training-jobs.ts';

export const sagemaker = {
  configSchema: sagemakerConfig,
  concurrency: 1,
  // Read by the image mirror's build (infra/constructs/trainer-image-mirror.ts grants it), not by a function.
  secrets: { source_credentials_secret: [] },
  inputSchema: (t) => ({
    unavailable: `the ${t.backend} backend's input schema is not read at submit (the trainer checks its input when it starts)`,
  }),
  create: () => new SageMakerTrainer(),
  unavailable: (t) => t.unavailable,
  // The job leaves its archive in the data bucket: staged where it lies.
  outputInBucket: { keyOf: jobOutputKey, missing: missingJobOutput },
  failureMessage: jobFailureMessage,
} satisfies Backend<SageMakerTrainerConfig>;
