/**
 * `demo`: a built-in trainer that speaks Cog's protocol and fakes the GPU work (lambdas/
 * demo-trainer). Local mode serves it over HTTP, driven by the same code as a Cog server; on
 * AWS it is a Lambda run once per training. Like a Cog server, it runs one prediction at a time.
 */
import type { Backend } from '../backend.ts';
import { poolServers } from '../cog/config.ts';
import { CogTrainer } from '../cog/trainer.ts';
import { TrainerFailedError } from '../types.ts';
import { demoConfig, type DemoTrainerConfig } from './config.ts';
import { DemoLambdaTrainer } from './lambda-trainer.ts';
import { DEMO_OPENAPI } from './openapi.ts';

export const demo = {
  configSchema: demoConfig,
  concurrency: 1,
  secrets: {},
  servers: poolServers,
  inputSchema: () => ({ document: DEMO_OPENAPI, source: 'the demo trainer' }),
  create(t, ctx) {
    const url = ctx.server ?? poolServers(t)[0];
    if (url) return new CogTrainer({ url, allow: ctx.allow });
    if (!ctx.demoTrainer) throw new TrainerFailedError(`the demo trainer ${ctx.name} is not deployed (no url, no demo trainer function)`);
    return new DemoLambdaTrainer(ctx.demoTrainer, ctx.store);
  },
} satisfies Backend<DemoTrainerConfig>;
