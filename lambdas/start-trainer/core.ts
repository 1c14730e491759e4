/**
 * "Start the trainer and wait for its callback". Idempotent: re-entered (after a retry, by the
 * wait loop, or by a redrive) it registers the fresh task token and starts nothing new; it asks
 * the trainer about the run, so an end the callback missed completes the wait at once and a
 * trainer that restarted and owes the run (local mode's demo trainer) takes it up again.
 */
import { callbackUrl } from '#shared/callback';
import type { Deps } from '#shared/deps';
import { StepError, StepErrors } from '#shared/steps';
import { backendFor } from '#shared/trainers/index';
import { inputForTrainer } from '#shared/trainers/inputs';
import { mustGet, recordRunState, signalTask, type Outcome } from '#shared/runs';
import type { TrainingRecord } from '#shared/training';

export async function startTrainer(
  d: Deps<'sfn' | 'secrets' | 's3'>,
  trainingId: string,
  taskToken: string,
  /** The pool server of the training's slot ("Wait for a free slot on the trainer"). */
  server: string | null = null,
  /** When the queue granted the slot: the training started then (it stopped waiting). */
  grantedAt: string | null = null,
): Promise<{ started: boolean }> {
  const t = await mustGet(d, trainingId);
  if (t.cancel_requested || t.status === 'canceled') throw new StepError(StepErrors.TrainingCanceled, 'the training was canceled');
  // A run already started stays on its server; a new one goes to its slot's.
  const pinned = t.run.started ? (t.run.server ?? null) : server;
  await d.store.updateTraining(t.id, { task_token: taskToken, ...(t.run.started ? {} : { 'run.server': pinned }) });

  // The run already ended (its callback raced an earlier token): complete this wait at once.
  if (t.run.terminal) {
    await signalTask(d, taskToken, terminalOutcome(t));
    return { started: false };
  }
  if (t.run.started) {
    await askAgain(d, t, taskToken);
    return { started: false };
  }

  const backend = await backendFor(d.config, t.trainer, d, pinned);
  const state = await backend.start({
    trainingId: t.id,
    runId: t.run.id,
    // Signed now, not when the client uploaded: the training may have waited for hours.
    input: await inputForTrainer(d, t.input),
    callbackUrl: await callbackUrl(d, t.id),
  });
  const updated = await d.store.updateTraining(
    t.id,
    // The queue's "waiting for trainer" line goes: from here the logs are the trainer's.
    { 'run.started': true, status: 'processing', started_at: t.started_at ?? grantedAt ?? d.now().toISOString(), logs: null, logs_length: null },
    { status: ['starting', 'processing'] },
  );
  if (!updated) return { started: true };
  if (t.status === 'starting') await d.emit?.(updated, 'start');
  const { outcome } = await recordRunState(d, updated, state);
  if (outcome.kind !== 'running') await signalTask(d, taskToken, outcome);
  return { started: true };
}

/**
 * The check request (for Cog, the start's own PUT, which never starts a second run on a real
 * server). Whatever it cannot tell is left to the wait loop's own check: its errors are not
 * this step's.
 */
async function askAgain(d: Deps<'sfn' | 'secrets' | 's3'>, t: TrainingRecord, taskToken: string): Promise<void> {
  try {
    const backend = await backendFor(d.config, t.trainer, d, t.run.server ?? null);
    const state = await backend.check({ trainingId: t.id, runId: t.run.id, input: await inputForTrainer(d, t.input), callbackUrl: await callbackUrl(d, t.id) });
    if (state === 'lost') return;
    const { outcome } = await recordRunState(d, t, state);
    if (outcome.kind !== 'running') await signalTask(d, taskToken, outcome);
  } catch {
    // The callback or the wait loop's check tells.
  }
}

export function terminalOutcome(t: TrainingRecord): Outcome {
  if (t.run.terminal === 'succeeded' && t.run.output) {
    return { kind: 'succeeded', result: { status: 'succeeded', output_url: t.run.output, predict_time: t.predict_time } };
  }
  return { kind: 'failed', error: t.error ?? `the trainer run ended: ${t.run.terminal}` };
}
