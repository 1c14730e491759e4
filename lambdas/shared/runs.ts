/**
 * Applies what a trainer reported (by callback, at start, or when asked) to the training, and
 * completes the waiting Step Functions task when the run is over. Shared by start-trainer,
 * check-trainer and trainer-callback so the three agree on every transition.
 */
import { SendTaskFailureCommand, SendTaskHeartbeatCommand, SendTaskSuccessCommand } from '@aws-sdk/client-sfn';
import type { BaseDeps, Deps } from './deps.ts';
import { StepError, StepErrors, type TrainerResult } from './steps.ts';
import { isTerminal, type TrainingRecord } from './training.ts';
import { LOGS_EVERY_MS, wants } from './events.ts';
import { boundedError, recordedLog, saveWholeLog } from './run-logs.ts';
import type { RunState } from './trainers/types.ts';

/** Late or duplicate completions are normal: the token already closed. */
const CLOSED_TOKEN = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

export type Outcome =
  | { kind: 'running' }
  | { kind: 'succeeded'; result: TrainerResult }
  | { kind: 'failed'; error: string };

export function outcomeOf(state: RunState): Outcome {
  if (state.status === 'succeeded') {
    if (!state.output) {
      return {
        kind: 'failed',
        error:
          'the trainer reported success without an output archive (a Cog trainer must run with --upload-url, ' +
          'or its upload failed)',
      };
    }
    return { kind: 'succeeded', result: { status: 'succeeded', output_url: state.output, predict_time: state.predict_time ?? null } };
  }
  if (state.status === 'failed') return { kind: 'failed', error: `the trainer failed: ${state.error ?? 'no error given'}` };
  if (state.status === 'canceled') return { kind: 'failed', error: 'the trainer canceled the run' };
  return { kind: 'running' };
}

/** Records the state; returns the outcome and the updated training (null when it was already over). */
export async function recordRunState(
  d: Deps<'s3'>,
  t: TrainingRecord,
  state: RunState,
): Promise<{ outcome: Outcome; training: TrainingRecord | null }> {
  if (isTerminal(t.status) || t.run.terminal) return { outcome: { kind: 'running' }, training: null };
  const outcome = outcomeOf(state);
  const fields: Record<string, unknown> = {};
  // Cog sends the whole log each time, and events can arrive out of order: keep the longest.
  const known = t.logs_length ?? t.logs?.length ?? 0;
  const newLogs = Boolean(state.logs && state.logs.length > known);
  if (state.logs && state.logs.length >= known) {
    const log = recordedLog(state.logs);
    // The bucket first: the record never shows a tail of more than the bucket holds.
    if (!log.whole) await saveWholeLog(d, t.id, state.logs);
    fields.logs = log.tail;
    fields.logs_length = log.length;
  }
  const now = d.now().getTime();
  const logsEvent = newLogs && wants(t, 'logs') && now - (t.logs_event_at ?? 0) >= LOGS_EVERY_MS;
  if (logsEvent) fields.logs_event_at = now;
  if (state.predict_time != null) fields.predict_time = state.predict_time;
  if (t.status === 'starting') {
    fields.status = 'processing';
    fields.started_at = t.started_at ?? d.now().toISOString();
  }
  if (outcome.kind === 'succeeded') {
    fields['run.terminal'] = 'succeeded';
    fields['run.output'] = outcome.result.output_url;
  } else if (outcome.kind === 'failed') {
    fields['run.terminal'] = state.status === 'canceled' ? 'canceled' : 'failed';
    fields.error = boundedError(outcome.error);
  }
  if (Object.keys(fields).length === 0) return { outcome, training: t };
  const training = await d.store.updateTraining(t.id, fields, { status: ['starting', 'processing'] });
  if (training && fields.status === 'processing') await d.emit?.(training, 'start');
  if (training && logsEvent) await d.emit?.(training, 'logs', String(now));
  return { outcome, training };
}

/** Completes (or keeps alive) the task waiting on the trainer. */
export async function signalTask(d: Deps<'sfn'>, token: string | undefined, outcome: Outcome): Promise<void> {
  if (!token) return;
  try {
    if (outcome.kind === 'succeeded') {
      await d.sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(outcome.result) }));
    } else if (outcome.kind === 'failed') {
      await d.sfn.send(
        new SendTaskFailureCommand({ taskToken: token, error: StepErrors.TrainerFailed, cause: outcome.error.slice(0, 32_000) }),
      );
    } else {
      await d.sfn.send(new SendTaskHeartbeatCommand({ taskToken: token }));
    }
  } catch (e) {
    if (!CLOSED_TOKEN.has((e as Error).name)) throw e;
  }
}

/** The training a step works on; a step for a training that does not exist fails the run. */
export async function mustGet(d: BaseDeps, id: string): Promise<TrainingRecord> {
  const t = await d.store.getTraining(id);
  if (!t) throw new StepError(StepErrors.TrainerFailed, `training ${id} does not exist`);
  return t;
}
