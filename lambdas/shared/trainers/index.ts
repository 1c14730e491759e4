/** Finds the trainer a request names, and builds the client its runs talk to. */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Config } from '../config.ts';
import { getSecretString } from '../secrets.ts';
import type { Store } from '../store.ts';
import type { DemoTrainerFunction } from './demo/lambda-trainer.ts';
import { backendOf, type TrainerConfig } from './backends.ts';
import { TrainerFailedError, type TrainerBackend } from './types.ts';

export * from './types.ts';
export { serverFor, serversOf, slotCount } from './capacity.ts';
export { backendNamed, backendOf, type BackendName, type TrainerConfig } from './backends.ts';

export interface ResolvedTrainer {
  name: string;
  config: TrainerConfig;
  /** How the Trainings API shows it. */
  owner: string;
  model: string;
  version: string;
}

/**
 * Finds the trainer a request names: its configured name, its Trainings API version (or the
 * version it is pinned to), or a version no trainer names, run by a trainer that runs any
 * (a replicate trainer that pins none).
 */
export function resolveTrainer(config: Config, ref: string): ResolvedTrainer | null {
  const trainers = Object.entries(config.trainers);
  for (const [name, t] of trainers) {
    const r = describeTrainer(config, name, t);
    if (name === ref || r.version === ref || backendOf(t).pinnedVersion?.(t) === ref) return r;
  }
  const open = trainers.find(([, t]) => backendOf(t).runsVersion?.(t, ref));
  return open ? { ...describeTrainer(config, open[0], open[1]), version: ref } : null;
}

export function describeTrainer(config: Config, name: string, t: TrainerConfig): ResolvedTrainer {
  const owner = t.owner ?? config.default_owner;
  return { name, config: t, owner, model: `${owner}/${t.name ?? name}`, version: t.version ?? backendOf(t).pinnedVersion?.(t) ?? name };
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
  const secret = (id: string) => getSecretString(deps.secrets, id);
  return backendOf(t).create(t, { name: trainerName, server, allow: config.egress.allow, secret, store: deps.store, demoTrainer: deps.demoTrainer });
}

/** Headers to download one of a trainer's own output URLs with (a replicate trainer's API token, for files on its API's origin). */
export async function downloadHeaders(
  config: Config,
  trainerName: string,
  deps: { secrets: SecretsManagerClient },
  url: string,
): Promise<Record<string, string> | undefined> {
  const t = config.trainers[trainerName];
  return t && backendOf(t).downloadHeaders?.(t, url, (id) => getSecretString(deps.secrets, id));
}
