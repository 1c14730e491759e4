/** A replicate trainer's configuration. */
import type { z } from 'zod';
import type { SchemaKit } from '../../config-fields.ts';

export const replicateConfig = ({ z, httpUrl, trainerCommon }: SchemaKit) =>
  z
    .object({
      backend: z.literal('replicate'),
      /** Replicate API base URL. */
      api_url: httpUrl.default('https://api.replicate.com'),
      /** A pinned trainer version (64 hex); otherwise the request's trainer_version is used. */
      trainer_version: z.string().regex(/^[0-9a-f]{64}$/).optional(),
      /** Secrets Manager secret holding the Replicate API token. */
      api_token_secret: z.string().min(1),
      /**
       * The Replicate model (`owner/name`) whose versions this trainer runs: with it the API
       * checks inputs at submit against the version's `openapi_schema`.
       */
      replicate_model: z.string().regex(/^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/, 'must be owner/name').optional(),
      ...trainerCommon,
    })
    .strict();

export type ReplicateTrainerConfig = z.output<ReturnType<typeof replicateConfig>>;
