import type { Context } from 'aws-lambda';
import { s3, secretsManager, sfn } from '#shared/aws';
import { baseDeps, demoTrainer, emitter, once } from '#shared/deps';
import { logger } from '#shared/log';
import { CheckTrainerEvent } from '#shared/steps';
import { checkTrainer } from './core.ts';

const deps = once(() => ({ ...baseDeps(), sfn: sfn(), secrets: secretsManager(), s3: s3(), emit: emitter(), demoTrainer: demoTrainer() }));

export const handler = async (event: unknown, context?: Context) => {
  const { training_id, execution_start_time } = CheckTrainerEvent.parse(event);
  const out = await checkTrainer(deps(), training_id, execution_start_time);
  logger('check-trainer', { training_id }, context).info('trainer checked', { status: out.status });
  return out;
};
