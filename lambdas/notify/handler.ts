import type { Context } from 'aws-lambda';
import { lazyS3, secretsManager } from '#shared/aws';
import { baseDeps } from '#shared/deps';
import { ENV, requireEnv } from '#shared/env';
import { logger } from '#shared/log';
import { LOG_MESSAGES } from '#shared/log-messages';
import { PredictionNotifyEvent } from '#shared/predictions/events';
import { getWebhookSigningMaster } from '#shared/secrets';
import { NotifyEvent } from '#shared/steps';
import { notify } from './core.ts';
import { notifyPrediction } from './prediction.ts';

/** `{training_id, event}` from the training workflow and the api; `{prediction_id, event}` from the prediction workflow and cancel. */
export const handler = async (event: unknown, context?: Context) => {
  const isPrediction = !!event && typeof event === 'object' && 'prediction_id' in event;
  const parsed = isPrediction ? PredictionNotifyEvent.parse(event) : NotifyEvent.parse(event);
  const { event: kind, seq } = parsed;
  const d = baseDeps();
  const log = logger('notify', 'prediction_id' in parsed ? { prediction_id: parsed.prediction_id } : { training_id: parsed.training_id }, context);
  try {
    const master = await getWebhookSigningMaster(secretsManager(), requireEnv(ENV.webhookSecret));
    const out =
      'prediction_id' in parsed ? await notifyPrediction({ ...d, s3: lazyS3 }, master, parsed.prediction_id, kind, seq) : await notify(d, master, parsed.training_id, kind, seq);
    log.info(LOG_MESSAGES.webhook, { event: kind, ...out });
    return out;
  } catch (e) {
    log.warn(LOG_MESSAGES.webhookNotDelivered, { event: kind, error: (e as Error).message });
    throw e;
  }
};
