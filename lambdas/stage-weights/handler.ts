import type { Context } from 'aws-lambda';
import { s3, secretsManager } from '#shared/aws';
import { baseDeps, once } from '#shared/deps';
import { ENV } from '#shared/env';
import { logger } from '#shared/log';
import { StageWeightsEvent } from '#shared/steps';
import { stageWeights } from './core.ts';

const deps = once(() => ({ ...baseDeps(), s3: s3(), secrets: secretsManager() }));

export const handler = async (event: unknown, context?: Context) => {
  const { training_id, output_url } = StageWeightsEvent.parse(event);
  const out = await stageWeights(deps(), { registryHost: process.env[ENV.registryHost] ?? '' }, training_id, output_url);
  logger('stage-weights', { training_id }, context).info('weights staged', { size: out.size, entries: out.entries });
  return out;
};
