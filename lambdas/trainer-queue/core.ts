/**
 * The trainer queue's steps: "Wait for a free slot on the trainer" (a callback task: the
 * token is completed when the training gets a slot), "Free the trainer slot", and the
 * execution-status rule that frees the slot of an execution that ended any other way.
 */
import type { Deps } from '#shared/deps';
import { memberOf as member, TrainerQueue, waitingLine } from '#shared/trainer-queue/index';
import { mustGet } from '#shared/runs';
import { StepError, StepErrors } from '#shared/steps';
import { isTerminal } from '#shared/training';

export type QueueDeps = Deps<'sfn'>;

/**
 * An execution ended (the EventBridge rule on its status): its slot goes free, and a training
 * its steps left unfinished — the execution stopped from outside (console, CLI), timed out, or
 * failed in a step that could not record it — ends `failed` with what happened, and its
 * webhook is sent. One the workflow or the API finished already is left as it is.
 */
export async function executionEnded(d: QueueDeps, trainingId: string, status: string): Promise<{ released: boolean; failed: boolean }> {
  const { released } = await releaseSlot(d, trainingId);
  if (status === 'SUCCEEDED') return { released, failed: false };
  const t = await d.store.getTraining(trainingId);
  if (!t || isTerminal(t.status)) return { released, failed: false };
  const how = { ABORTED: 'was stopped', TIMED_OUT: 'timed out', FAILED: 'failed' }[status] ?? `ended (${status})`;
  const updated = await d.store.updateTraining(
    t.id,
    {
      status: t.cancel_requested ? 'canceled' : 'failed',
      error: t.cancel_requested ? null : `the training's workflow execution ${how} outside its steps (see execution ${t.id} in the Step Functions console)`,
      completed_at: d.now().toISOString(),
      task_token: null,
    },
    { status: ['starting', 'processing', 'pushing'] },
  );
  if (!updated) return { released, failed: false };
  await d.emit?.(updated, 'completed');
  return { released, failed: true };
}

export async function acquireSlot(d: QueueDeps, trainingId: string, token: string, execution: string): Promise<{ queued: boolean; ahead: number | null }> {
  const t = await mustGet(d, trainingId);
  if (t.cancel_requested || t.status === 'canceled') throw new StepError(StepErrors.TrainingCanceled, 'the training was canceled');
  const queue = new TrainerQueue(d);
  // A re-template's run is over already: it needs no trainer, so it takes no slot.
  if (t.run.terminal) {
    await queue.wakeOnly(token, { trainer: t.trainer, slot: null, server: null, granted_at: null });
    return { queued: false, ahead: 0 };
  }
  let out;
  try {
    out = await queue.acquire(member(t), token, execution);
  } catch (e) {
    if ((e as Error).name === StepErrors.QueueTimeout) throw new StepError(StepErrors.QueueTimeout, (e as Error).message);
    throw e;
  }
  if (out.grant) return { queued: false, ahead: 0 };
  // Later turns leave the line be; GET /v1/trainings/{id} shows the current place.
  if (out.ahead === null) return { queued: true, ahead: null };
  const line = waitingLine(t.trainer, out.ahead);
  if (t.logs !== line && !t.run.started) await d.store.updateTraining(t.id, { logs: line }, { status: ['starting'] });
  return { queued: true, ahead: out.ahead };
}

export async function releaseSlot(d: QueueDeps, trainingId: string): Promise<{ released: boolean }> {
  const t = await d.store.getTraining(trainingId);
  if (!t) return { released: false };
  return new TrainerQueue(d).release(member(t));
}
