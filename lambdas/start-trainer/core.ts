/**
 * "Start the trainer and wait for its callback". Idempotent: re-entered (after a retry, or by
 * the wait loop) it registers the fresh task token and starts nothing new.
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
  if (t.run.started) return { started: false };

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

export function terminalOutcome(t: TrainingRecord): Outcome {
  if (t.run.terminal === 'succeeded' && t.run.output) {
    return { kind: 'succeeded', result: { status: 'succeeded', output_url: t.run.output, predict_time: t.predict_time } };
  }
  return { kind: 'failed', error: t.error ?? `the trainer run ended: ${t.run.terminal}` };
}
