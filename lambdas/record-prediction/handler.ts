import type { Context } from 'aws-lambda';
import { s3 } from '#shared/aws';
import { baseDeps, once } from '#shared/deps';
import { logger } from '#shared/log';
import { RecordPredictionEvent } from '#shared/serving/steps';
import { recordFailure, storeOutputs } from './core.ts';

const deps = once(() => ({ ...baseDeps(), s3: s3() }));

export const handler = async (event: unknown, context?: Context) => {
  const ev = RecordPredictionEvent.parse(event);
  const out = ev.action === 'outputs' ? await storeOutputs(deps(), ev.prediction_id, ev.response.output_location) : await recordFailure(deps(), ev.prediction_id, ev.error);
  logger('record-prediction', { prediction_id: ev.prediction_id }, context).info(`recorded the prediction's ${ev.action}`, out);
  return out;
};
