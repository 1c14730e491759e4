/** Picks the backend of a configured trainer. */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Config, TrainerConfig } from '../config.ts';
import { getSecretString } from '../secrets.ts';
import { CogTrainer } from './cog.ts';
import { DemoLambdaTrainer, type DemoTrainerFunction } from './demo-lambda.ts';
import { SageMakerTrainer } from './sagemaker.ts';
import { DynamoPredictionLedger, REPLICATE_VERSION, ReplicateTrainer, replicateDownloadHeaders } from './replicate.ts';
import type { Store } from '../store.ts';
import { serversOf } from './capacity.ts';
import { TrainerFailedError, type TrainerBackend } from './types.ts';

export * from './types.ts';
export { serverFor, serversOf, slotCount } from './capacity.ts';

export interface ResolvedTrainer {
  name: string;
  config: TrainerConfig;
  /** How the Trainings API shows it. */
  owner: string;
  model: string;
  version: string;
}

/**
 * Finds the trainer a request names: its configured name, its Trainings API version, or (a
 * 64-hex version no trainer names) a Replicate version, run by a replicate trainer that pins none.
 */
export function resolveTrainer(config: Config, ref: string): ResolvedTrainer | null {
  const trainers = Object.entries(config.trainers);
  for (const [name, t] of trainers) {
    const r = describeTrainer(config, name, t);
    if (name === ref || r.version === ref || (t.backend === 'replicate' && t.trainer_version === ref)) return r;
  }
  if (!REPLICATE_VERSION.test(ref)) return null;
  const open = trainers.find(([, t]) => t.backend === 'replicate' && !t.trainer_version);
  return open ? { ...describeTrainer(config, open[0], open[1]), version: ref } : null;
}

export function describeTrainer(config: Config, name: string, t: TrainerConfig): ResolvedTrainer {
  const owner = t.owner ?? config.default_owner;
  // A pinned Replicate version is the natural version of a replicate trainer.
  const pinned = t.backend === 'replicate' ? t.trainer_version : undefined;
  return { name, config: t, owner, model: `${owner}/${t.name ?? name}`, version: t.version ?? pinned ?? name };
}

/** What building a backend takes: the secrets client, the table, and the demo trainer's function where deployed. */
export interface TrainerDeps {
  secrets: SecretsManagerClient;
  store: Store;
  /** The demo trainer on AWS (local mode serves it over HTTP instead). */
  demoTrainer?: DemoTrainerFunction;
}

/**
 * The backend of a trainer; `server` is the pool server a run is pinned to (its check, cancel
 * and callbacks go there), else the trainer's first server.
 */
export async function backendFor(config: Config, trainerName: string, deps: TrainerDeps, server?: string | null): Promise<TrainerBackend> {
  const t = config.trainers[trainerName];
  if (!t) throw new TrainerFailedError(`trainer ${trainerName} is no longer configured`);
  const allow = config.egress.allow;
  switch (t.backend) {
    case 'cog': {
      const authToken = t.webhook_auth_token_secret
        ? await getSecretString(deps.secrets, t.webhook_auth_token_secret)
        : undefined;
      return new CogTrainer({ url: server ?? serversOf(t)[0]!, allow, authToken });
    }
    case 'demo': {
      // Local mode serves the demo trainer over Cog's protocol, driven by the same code as a Cog
      // server; on AWS it is a Lambda (DEMO_TRAINER_FUNCTION).
      const url = server ?? serversOf(t)[0];
      if (url) return new CogTrainer({ url, allow });
      if (!deps.demoTrainer) throw new TrainerFailedError(`the demo trainer ${trainerName} is not deployed (no url, no demo trainer function)`);
      return new DemoLambdaTrainer(deps.demoTrainer, deps.store);
    }
    case 'replicate': {
      const { store } = deps;
      return new ReplicateTrainer({
        apiUrl: t.api_url,
        token: (await getSecretString(deps.secrets, t.api_token_secret)).trim(),
        allow,
        ledger: new DynamoPredictionLedger(store.client, store.table),
        // Unpinned, the trainer runs the version the training was created with.
        versionOf: async (run) => t.trainer_version ?? (await store.getTraining(run.trainingId))?.trainer_version ?? null,
      });
    }
    case 'sagemaker':
      return new SageMakerTrainer();
  }
}

/**
 * Headers to download one of a trainer's own output URLs with: a replicate trainer's API token,
 * for files on its API's origin. Apart from backendFor, so that stage-weights bundles no backend
 * (nor the Lambda client the demo backend brings).
 */
export async function downloadHeaders(
  config: Config,
  trainerName: string,
  deps: { secrets: SecretsManagerClient },
  url: string,
): Promise<Record<string, string> | undefined> {
  const t = config.trainers[trainerName];
  if (t?.backend !== 'replicate') return undefined;
  return replicateDownloadHeaders(t.api_url, (await getSecretString(deps.secrets, t.api_token_secret)).trim(), url);
}
