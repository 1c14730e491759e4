/** A cog trainer's configuration. */
import type { z } from 'zod';
import type { SchemaKit } from '../../config-fields.ts';

export const cogConfig = ({ z, httpUrl, trainerCommon }: SchemaKit) =>
  z
    .object({
      backend: z.literal('cog'),
      /** Base URL of a Cog >= 0.7 server; may carry a path prefix. */
      url: httpUrl.optional(),
      /** Several Cog servers of one image, used as one pool; each run stays on the server that took it. */
      urls: z.array(httpUrl).min(1).max(100).optional(),
      /** Secrets Manager secret (name or ARN) holding Cog's WEBHOOK_AUTH_TOKEN, if the server sets one. */
      webhook_auth_token_secret: z.string().min(1).optional(),
      /**
       * Secrets Manager secret (name or ARN) holding the token of this trainer's upload relay
       * (bin/cog-upload-relay.ts); without it the trainer-upload routes refuse this trainer.
       */
      upload_token_secret: z.string().min(1).optional(),
      ...trainerCommon,
    })
    .strict()
    .refine((t) => (t.url === undefined) !== (t.urls === undefined), { message: 'set either url or urls (a pool), not both', path: ['url'] });

export type CogTrainerConfig = z.output<ReturnType<typeof cogConfig>>;

/** A pool's servers: `urls`, or the one `url`. */
export const poolServers = (t: { backend: string; url?: string; urls?: string[] }): string[] => t.urls ?? (t.url ? [t.url] : []);
