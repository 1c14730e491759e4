import type { Context } from 'aws-lambda';
import { logs } from '#shared/aws';
import { baseDeps, emitter, once } from '#shared/deps';
import { logger } from '#shared/log';
import { LOG_MESSAGES } from '#shared/log-messages';
import { RecordEvent } from '#shared/steps';
import { record } from './core.ts';

const deps = once(() => ({ ...baseDeps(), emit: emitter(), logs: logs() }));

export const handler = async (event: unknown, context?: Context) => {
  const ev = RecordEvent.parse(event);
  const out = await record(deps(), ev);
  logger('record', { training_id: ev.training_id }, context).info(LOG_MESSAGES.recorded(ev.action), out);
  return out;
};
