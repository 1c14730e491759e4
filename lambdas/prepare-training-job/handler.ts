import { s3, secretsManager } from '#shared/aws';
import { baseDeps, emitter, once } from '#shared/deps';
import { ENV, requireEnv } from '#shared/env';
import { logger } from '#shared/log';
import { PrepareJobEvent } from '#shared/steps';
import { prepareTrainingJob } from './core.ts';

const deps = once(() => ({ ...baseDeps(), s3: s3(), secrets: secretsManager(), emit: emitter() }));

export const handler = async (event: unknown) => {
  const { training_id, retry } = PrepareJobEvent.parse(event);
  const env = {
    jobPrefix: requireEnv(ENV.jobPrefix),
    mirrorHost: process.env[ENV.trainerImageHost] ?? '',
    mirrors: JSON.parse(process.env[ENV.trainerMirrors] || '{}') as Record<string, string>,
    // Baked into the bundle at synth (like the configuration); local mode sets the variable.
    runner: requireEnv(ENV.runnerSource),
  };
  const plan = await prepareTrainingJob(deps(), env, training_id, retry);
  logger('prepare-training-job', { training_id }).info('training job prepared', { job: plan.name, image: plan.image, retry });
  return plan;
};
