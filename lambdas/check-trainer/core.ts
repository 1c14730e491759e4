/** "Ask the trainer how it is doing": runs when a callback wait timed out. */
import { callbackUrl } from '#shared/callback';
import type { Deps } from '#shared/deps';
import { StepError, StepErrors, type CheckTrainerResult } from '#shared/steps';
import { backendFor } from '#shared/trainers/index';
import { mustGet, recordRunState } from '#shared/runs';
import { terminalOutcome } from '../start-trainer/core.ts';

export async function checkTrainer(d: Deps<'sfn' | 'secrets' | 's3'>, trainingId: string, executionStart: string): Promise<CheckTrainerResult> {
  const t = await mustGet(d, trainingId);
  if (t.cancel_requested || t.status === 'canceled') throw new StepError(StepErrors.TrainingCanceled, 'the training was canceled');
  if (t.run.terminal) return settle(terminalOutcome(t));

  const backend = await backendFor(d.config, t.trainer, d, t.run.server);
  const limit = d.config.timeouts.training_seconds;
  if (d.now().getTime() - Date.parse(executionStart) > limit * 1000) {
    if (t.run.started) await backend.cancel(t.run.id).catch(() => undefined);
    throw new StepError(StepErrors.TrainingDeadlineExceeded, `the trainer did not finish within ${limit} s (timeouts.training_seconds)`);
  }
  // Not started yet (e.g. the trainer was busy): go back and start it.
  if (!t.run.started) return { status: 'running' };

  // The same request as the start: Cog validates the body (an empty webhook is a 422) before it looks at the id.
  const state = await backend.check({ trainingId: t.id, runId: t.run.id, input: t.input, callbackUrl: await callbackUrl(d, t.id) });
  if (state === 'lost') {
    throw new StepError(
      StepErrors.TrainerFailed,
      `the trainer no longer knows run ${t.run.id} and its result never reached the callback route; start a new training`,
    );
  }
  const { outcome } = await recordRunState(d, t, state);
  return settle(outcome);
}

function settle(outcome: ReturnType<typeof terminalOutcome>): CheckTrainerResult {
  if (outcome.kind === 'succeeded') return outcome.result;
  if (outcome.kind === 'failed') throw new StepError(StepErrors.TrainerFailed, outcome.error);
  return { status: 'running' };
}
