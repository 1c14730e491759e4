import type { Context } from 'aws-lambda';
import { s3, secretsManager, sfn } from '#shared/aws';
import { baseDeps, demoTrainer, emitter, once } from '#shared/deps';
import { logger } from '#shared/log';
import { StartTrainerEvent } from '#shared/steps';
import { startTrainer } from './core.ts';

const deps = once(() => ({ ...baseDeps(), sfn: sfn(), secrets: secretsManager(), s3: s3(), emit: emitter(), demoTrainer: demoTrainer() }));

export const handler = async (event: unknown, context?: Context) => {
  const { training_id, task_token, server, granted_at } = StartTrainerEvent.parse(event);
  const log = logger('start-trainer', { training_id }, context);
  const out = await startTrainer(deps(), training_id, task_token, server ?? null, granted_at ?? null);
  log.info(out.started ? 'trainer run started' : 'waiting on the run already started');
  return out;
};
