/** The demo trainer's configuration. */
import type { z } from 'zod';
import type { SchemaKit } from '../../config-fields.ts';

export const demoConfig = ({ z, httpUrl, trainerCommon }: SchemaKit) =>
  z
    .object({
      backend: z.literal('demo'),
      /** Training speed of the demo trainer. */
      steps_per_second: z.number().positive().max(10_000).default(10),
      /** Where the demo trainer's Cog protocol is served; local mode fills it in. */
      url: httpUrl.optional(),
      /** Servers of the demo trainer; local mode starts one per slot of `concurrency`. */
      urls: z.array(httpUrl).min(1).max(100).optional(),
      ...trainerCommon,
    })
    .strict();

export type DemoTrainerConfig = z.output<ReturnType<typeof demoConfig>>;
