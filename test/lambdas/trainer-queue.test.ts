/**
 * trainer-queue on an execution's end (the EventBridge rule): the slot goes free, and a
 * training its steps left unfinished ends `failed` with its webhook; against dynalite, as the
 * trainer-queue principal, with the notify function a real local Lambda.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lambda } from '#shared/aws';
import { lambdaEmitter } from '#shared/events';
import { pollUntil } from '#infra/local/aws';
import { executionEnded, type QueueDeps } from '#lambdas/trainer-queue/core';
import { newTraining, startFixture, type Fixture } from '#test-helpers/aws-local';

let fx: Fixture;
let d: QueueDeps;
const invoked: { training_id: string; event: string }[] = [];

beforeAll(async () => {
  fx = await startFixture({ as: 'trainer-queue', lambdas: { notify: async (payload) => void invoked.push(payload as (typeof invoked)[number]) } });
  d = { ...fx.deps, emit: lambdaEmitter(lambda(), 'notify') };
});
afterAll(() => fx?.stop());

const hooked = { webhook: 'http://127.0.0.1:9/hook', webhook_events_filter: ['completed' as const] };

describe('an execution that ended', () => {
  it.each([
    ['ABORTED', 'was stopped'],
    ['TIMED_OUT', 'timed out'],
    ['FAILED', 'failed'],
  ])('%s with the training unfinished → failed, saying so, and the completed webhook', async (status, how) => {
    const t = await newTraining(d, { status: 'processing', ...hooked });
    expect(await executionEnded(d, t.id, status)).toEqual({ released: false, failed: true });
    const after = (await d.store.getTraining(t.id))!;
    expect(after.status).toBe('failed');
    expect(after.error).toBe(`the training's workflow execution ${how} outside its steps (see execution ${t.id} in the Step Functions console)`);
    expect(after.completed_at).not.toBeNull();
    await pollUntil(() => invoked.find((p) => p.training_id === t.id), { what: 'the completed event' });
    expect(invoked.filter((p) => p.training_id === t.id)).toEqual([{ training_id: t.id, event: 'completed' }]);
  });

  it('leaves a training the workflow or the API finished as it is, and sends nothing', async () => {
    const ids: string[] = [];
    for (const [status, execution] of [
      ['succeeded', 'SUCCEEDED'],
      ['failed', 'FAILED'],
      ['canceled', 'ABORTED'],
    ] as const) {
      const t = await newTraining(d, { status, error: status === 'failed' ? 'CUDA out of memory' : null, ...hooked });
      ids.push(t.id);
      expect(await executionEnded(d, t.id, execution)).toEqual({ released: false, failed: false });
      expect((await d.store.getTraining(t.id))!).toMatchObject({ status, error: t.error });
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(invoked.filter((p) => ids.includes(p.training_id))).toEqual([]);
  });

  it('ends a training whose cancel was asked for as canceled, without an error', async () => {
    const t = await newTraining(d, { status: 'processing', cancel_requested: true, ...hooked });
    expect(await executionEnded(d, t.id, 'ABORTED')).toMatchObject({ failed: true });
    expect((await d.store.getTraining(t.id))!).toMatchObject({ status: 'canceled', error: null });
  });
});
