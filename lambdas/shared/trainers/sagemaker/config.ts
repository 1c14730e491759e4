/**
 * A sagemaker trainer's configuration: a Cog trainer image run as one SageMaker training job
 * per training (see docs/sagemaker.md). The image is copied into the stack's ECR by digest
 * before its first job.
 */
import type { z } from 'zod';
import type { SchemaKit } from '../../config-fields.ts';

export const sagemakerConfig = ({ z, trainerCommon }: SchemaKit) =>
  z
    .object({
      backend: z.literal('sagemaker'),
      /** The Cog image, pinned by digest: `<registry>/<repository>@sha256:<64 hex>`. */
      image: z
        .string()
        .regex(/^[a-z0-9.:-]+\/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$/, 'must be <registry>/<repository>@sha256:<64 hex> (pin the image by digest)'),
      /**
       * `predict` runs the image's predictor, `train` its `train:` function (Cog >= 0.9,
       * `--x-mode train`). Left out, the runner reads the image's cog.yaml (what its
       * `run.cog.config` label holds): `train` when it names a train function.
       */
      mode: z.enum(['predict', 'train']).optional(),
      instance_type: z.string().regex(/^ml\.[a-z0-9]+\.[a-z0-9]+$/, 'must be a SageMaker instance type such as ml.g5.2xlarge').default('ml.g5.2xlarge'),
      /** The job's EBS volume (the image's model downloads and the output archive live there). */
      volume_gb: z.number().int().min(1).max(16_384).default(100),
      /** SageMaker stops the job after this long (MaxRuntimeInSeconds). */
      max_runtime_seconds: z.number().int().min(60).max(28 * 86_400).default(4 * 3600),
      /** Managed spot training: cheaper, may be interrupted; the wait for capacity counts against max_wait_seconds. */
      spot: z.boolean().default(false),
      /** Spot only: run time plus waiting for spot capacity (MaxWaitTimeInSeconds, >= max_runtime_seconds). */
      max_wait_seconds: z.number().int().min(60).optional(),
      /** Warm pool: keep the instance this long after a job (its own quota, 0 by default). */
      keep_alive_seconds: z.number().int().min(0).max(3600).default(0),
      /** Secrets Manager secret with `{"username", "password"}` for the image's source registry. */
      source_credentials_secret: z.string().min(1).optional(),
      /** Why this trainer cannot run here; local mode sets it when no docker engine is reachable. */
      unavailable: z.string().optional(),
      ...trainerCommon,
    })
    .strict()
    .refine((t) => !t.spot || (t.max_wait_seconds ?? 0) >= t.max_runtime_seconds, {
      message: 'with spot, max_wait_seconds must be set and at least max_runtime_seconds',
      path: ['max_wait_seconds'],
    })
    // SageMaker refuses the pair: "warm pools cannot be used with spot instances"
    // (https://docs.aws.amazon.com/sagemaker/latest/dg/train-warm-pools.html#train-warm-pools-considerations).
    .refine((t) => !(t.spot && t.keep_alive_seconds > 0), {
      message: 'SageMaker warm pools cannot be used with spot instances: set spot to false or keep_alive_seconds to 0',
      path: ['keep_alive_seconds'],
    });

export type SageMakerTrainerConfig = z.output<ReturnType<typeof sagemakerConfig>>;
