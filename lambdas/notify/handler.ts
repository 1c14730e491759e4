import type { Context } from 'aws-lambda';
import { secretsManager } from '#shared/aws';
import { baseDeps } from '#shared/deps';
import { ENV, requireEnv } from '#shared/env';
import { logger } from '#shared/log';
import { LOG_MESSAGES } from '#shared/log-messages';
import { getWebhookSigningMaster } from '#shared/secrets';
import { NotifyEvent } from '#shared/steps';
import { notify } from './core.ts';

export const handler = async (event: unknown, context?: Context) => {
  const { training_id, event: kind, seq } = NotifyEvent.parse(event);
  const d = baseDeps();
  const log = logger('notify', { training_id }, context);
  try {
    const out = await notify(d, await getWebhookSigningMaster(secretsManager(), requireEnv(ENV.webhookSecret)), training_id, kind, seq);
    log.info(LOG_MESSAGES.webhook, { event: kind, ...out });
    return out;
  } catch (e) {
    log.warn(LOG_MESSAGES.webhookNotDelivered, { event: kind, error: (e as Error).message });
    throw e;
  }
};
