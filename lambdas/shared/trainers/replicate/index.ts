/**
 * `replicate`: Replicate predictions (api.replicate.com, or anything that speaks its API), with
 * an API token from a secret. Replicate queues and scales on its side, so the cap here only
 * bounds the spend in flight: 10 keeps a burst within Replicate's create-rate limits while still
 * running a team's work in parallel.
 */
import type { Backend } from '../backend.ts';
import { replicateConfig, type ReplicateTrainerConfig } from './config.ts';
import { DynamoPredictionLedger } from './ledger.ts';
import { REPLICATE_VERSION, ReplicateTrainer, replicateDownloadHeaders } from './trainer.ts';

export const replicate = {
  configSchema: replicateConfig,
  concurrency: 10,
  secrets: { api_token_secret: ['backends', 'downloads'] },
  async inputSchema(t, trainer, secret) {
    if (!t.replicate_model) return { unavailable: `trainers.${trainer.name}.replicate_model is not set, so the version's schema cannot be looked up` };
    if (!REPLICATE_VERSION.test(trainer.version)) return { unavailable: `${trainer.version} is not a Replicate version id` };
    const token = (await secret(t.api_token_secret)).trim();
    return {
      url: `${t.api_url.replace(/\/+$/, '')}/v1/models/${t.replicate_model}/versions/${trainer.version}`,
      headers: { authorization: `Bearer ${token}` },
      pick: (version) => (version as { openapi_schema?: unknown } | null)?.openapi_schema,
      source: `Replicate version ${t.replicate_model}:${trainer.version}`,
    };
  },
  async create(t, ctx) {
    return new ReplicateTrainer({
      apiUrl: t.api_url,
      token: (await ctx.secret(t.api_token_secret)).trim(),
      allow: ctx.allow,
      ledger: new DynamoPredictionLedger(ctx.store.client, ctx.store.table),
      // Unpinned, the trainer runs the version the training was created with.
      versionOf: async (run) => t.trainer_version ?? (await ctx.store.getTraining(run.trainingId))?.trainer_version ?? null,
    });
  },
  // Files on the API's own origin need the API token.
  downloadHeaders: async (t, url, secret) => replicateDownloadHeaders(t.api_url, (await secret(t.api_token_secret)).trim(), url),
  // A pinned Replicate version is the natural version of a replicate trainer.
  pinnedVersion: (t) => t.trainer_version,
  // A 64-hex version no trainer names runs on a replicate trainer that pins none.
  runsVersion: (t, version) => !t.trainer_version && REPLICATE_VERSION.test(version),
} satisfies Backend<ReplicateTrainerConfig>;
