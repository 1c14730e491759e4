import { logs } from '#shared/aws';
import { deps } from '#shared/deps';
import { logger } from '#shared/log';
import { RecordEvent } from '#shared/steps';
import { record } from './core.ts';

export const handler = async (event: unknown) => {
  const ev = RecordEvent.parse(event);
  const out = await record({ ...deps(), logs: logs() }, ev);
  logger('record', { training_id: ev.training_id }).info(`recorded ${ev.action}`, out);
  return out;
};
