import { secretsManager, sfn } from '#shared/aws';
import { baseDeps, emitter, once } from '#shared/deps';
import { logger } from '#shared/log';
import { StartTrainerEvent } from '#shared/steps';
import { startTrainer } from './core.ts';

const deps = once(() => ({ ...baseDeps(), sfn: sfn(), secrets: secretsManager(), emit: emitter() }));

export const handler = async (event: unknown) => {
  const { training_id, task_token } = StartTrainerEvent.parse(event);
  const log = logger('start-trainer', { training_id });
  const out = await startTrainer(deps(), training_id, task_token);
  log.info(out.started ? 'trainer run started' : 'waiting on the run already started');
  return out;
};
