/**
 * `cog`: a Cog >= 0.7 prediction server you run, or a pool of them (`urls`), as the trainer.
 * A Cog server runs one prediction at a time.
 */
import type { Backend } from '../backend.ts';
import { cogConfig, poolServers, type CogTrainerConfig } from './config.ts';
import { CogTrainer } from './trainer.ts';

export const cog = {
  configSchema: cogConfig,
  concurrency: 1,
  secrets: { webhook_auth_token_secret: ['backends'], upload_token_secret: ['uploads'] },
  servers: poolServers,
  inputSchema(t, trainer) {
    // The servers of a pool run one image, so the first one's schema stands for all.
    const server = poolServers(t)[0];
    if (!server) return { unavailable: `trainers.${trainer.name} names no server` };
    const url = `${server.replace(/\/+$/, '')}/openapi.json`;
    return { url, source: `the Cog trainer's ${url}` };
  },
  async create(t, ctx) {
    const authToken = t.webhook_auth_token_secret ? await ctx.secret(t.webhook_auth_token_secret) : undefined;
    return new CogTrainer({ url: ctx.server ?? poolServers(t)[0]!, allow: ctx.allow, authToken });
  },
} satisfies Backend<CogTrainerConfig>;
