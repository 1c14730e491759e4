import { secretsManager, sfn } from '#shared/aws';
import { baseDeps, emitter, once } from '#shared/deps';
import { logger } from '#shared/log';
import { CheckTrainerEvent } from '#shared/steps';
import { checkTrainer } from './core.ts';

const deps = once(() => ({ ...baseDeps(), sfn: sfn(), secrets: secretsManager(), emit: emitter() }));

export const handler = async (event: unknown) => {
  const { training_id, execution_start_time } = CheckTrainerEvent.parse(event);
  const out = await checkTrainer(deps(), training_id, execution_start_time);
  logger('check-trainer', { training_id }).info('trainer checked', { status: out.status });
  return out;
};
