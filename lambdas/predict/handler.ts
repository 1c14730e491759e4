import type { Context } from 'aws-lambda';
import { lambda, s3 } from '#shared/aws';
import { baseDeps, once } from '#shared/deps';
import { ENV } from '#shared/env';
import { logger } from '#shared/log';
import { sagemakerRuntime } from '#shared/serving/clients';
import { PredictEvent } from '#shared/serving/steps';
import { lambdaStartWebhook, predict } from './core.ts';

const deps = once(() => {
  const notify = process.env[ENV.notifyFunction];
  return { ...baseDeps(), runtime: sagemakerRuntime(), s3: s3(), ...(notify ? { startWebhook: lambdaStartWebhook(lambda(), notify) } : {}) };
});

export const handler = async (event: unknown, context?: Context) => {
  const ev = PredictEvent.parse(event);
  const out = await predict(deps(), ev);
  // Never the task token (the logger scrubs `*token*` keys; it is not passed at all).
  logger('predict', { prediction_id: ev.prediction_id }, context).info('sent the request to the endpoint', { endpoint: ev.endpoint, ...out });
  return out;
};
