/** Canceling a training: the record, the trainer's run, the execution (and its build), the webhook. */
import { StopExecutionCommand } from '@aws-sdk/client-sfn';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { memberOf, TrainerQueue } from '#shared/trainer-queue/index';
import { backendFor } from '#shared/trainers/index';
import { isTerminal, view } from '#shared/training';
import { ownedTraining } from './reads.ts';
import type { ApiDeps, ApiRequest, ApiResponse } from './types.ts';

export async function cancelTraining(d: ApiDeps, req: ApiRequest, id: string): Promise<ApiResponse> {
  const t = await ownedTraining(d, req, id);
  if (isTerminal(t.status)) return { status: 200, body: view(t, d.publicUrl) };
  const updated = await d.store.updateTraining(
    t.id,
    { cancel_requested: true, status: 'canceled', completed_at: d.now().toISOString(), task_token: null },
    { status: ['starting', 'processing', 'pushing'] },
  );
  if (!updated) return { status: 200, body: view((await d.store.getTraining(t.id))!, d.publicUrl) };

  if (t.run.started && !t.run.terminal) {
    try {
      await (await backendFor(d.config, t.trainer, d, t.run.server)).cancel(t.run.id);
    } catch (e) {
      d.log.warn('trainer cancel failed', { training_id: t.id, error: (e as Error).message });
    }
  }
  const executionArn = d.stateMachineArn.replace(':stateMachine:', ':execution:') + `:${t.id}`;
  try {
    // Stopping the execution also stops a running build (startBuild.sync).
    await d.sfn.send(new StopExecutionCommand({ executionArn, error: 'TrainingCanceled', cause: 'canceled through the API' }));
  } catch (e) {
    if ((e as Error).name !== 'ExecutionDoesNotExist') throw e;
  }
  // Out of the trainer's queue at once (or its slot to the next waiter), after the stop so
  // that a slot handed to this training meanwhile is seen as ended and passed on.
  try {
    await new TrainerQueue(d).release(memberOf(t));
  } catch (e) {
    // The end of the execution frees it too (the rule on its status change).
    d.log.warn('freeing the trainer slot failed', { training_id: t.id, error: (e as Error).message });
  }
  // A stopped execution runs no Catch, so the webhook is sent from here (async, retried by Lambda).
  await d.lambda.send(
    new InvokeCommand({
      FunctionName: d.notifyFunction,
      InvocationType: 'Event',
      Payload: Buffer.from(JSON.stringify({ training_id: t.id, event: 'completed' })),
    }),
  );
  d.log.info('training canceled', { training_id: t.id });
  return { status: 200, body: view(updated, d.publicUrl) };
}
