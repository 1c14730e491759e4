/** Picks the backend of a configured trainer. */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Config, TrainerConfig } from '../config.ts';
import { getSecretString } from '../secrets.ts';
import { CogTrainer } from './cog.ts';
import { DemoLambdaTrainer } from './demo-lambda.ts';
import { ENV, requireEnv } from '../env.ts';
import { TrainerFailedError, type TrainerBackend } from './types.ts';

export * from './types.ts';

export interface ResolvedTrainer {
  name: string;
  config: TrainerConfig;
  /** How the Trainings API shows it. */
  owner: string;
  model: string;
  version: string;
}

/** Finds the trainer a request names (its configured name or its Trainings API version). */
export function resolveTrainer(config: Config, ref: string): ResolvedTrainer | null {
  for (const [name, t] of Object.entries(config.trainers)) {
    const r = describeTrainer(config, name, t);
    if (name === ref || r.version === ref) return r;
  }
  return null;
}

export function describeTrainer(config: Config, name: string, t: TrainerConfig): ResolvedTrainer {
  const owner = t.owner ?? config.default_owner;
  return { name, config: t, owner, model: `${owner}/${t.name ?? name}`, version: t.version ?? name };
}

export async function backendFor(
  config: Config,
  trainerName: string,
  deps: { secrets: SecretsManagerClient },
): Promise<TrainerBackend> {
  const t = config.trainers[trainerName];
  if (!t) throw new TrainerFailedError(`trainer ${trainerName} is no longer configured`);
  const allow = config.egress.allow;
  switch (t.backend) {
    case 'cog': {
      const authToken = t.webhook_auth_token_secret
        ? await getSecretString(deps.secrets, t.webhook_auth_token_secret)
        : undefined;
      return new CogTrainer({ url: t.url, allow, authToken });
    }
    case 'demo': {
      // Local mode serves the demo trainer over Cog's protocol, driven by the same code as a Cog
      // server; on AWS it is a Lambda (DEMO_TRAINER_FUNCTION).
      if (t.url) return new CogTrainer({ url: t.url, allow });
      const fn = process.env[ENV.demoTrainerFunction];
      if (!fn) throw new TrainerFailedError(`the demo trainer ${trainerName} is not deployed (no url, no ${ENV.demoTrainerFunction})`);
      return new DemoLambdaTrainer(fn, requireEnv(ENV.table));
    }
    case 'replicate':
      throw new TrainerFailedError('the replicate backend is not available in this version');
  }
}
