/** record: the state machine's bookkeeping, against dynalite. */
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainingRecord } from '#shared/training';
import { record, type RecordDeps } from '#lambdas/record/core';
import { lambda } from '#shared/aws';
import { lambdaEmitter } from '#shared/events';
import { pollUntil } from '#infra/local/aws';
import { newTraining, startFixture, type Fixture } from '#test-helpers/aws-local';

const DIGEST = 'c'.repeat(64);
let fx: Fixture;
let d: RecordDeps;

const invoked: unknown[] = [];

beforeAll(async () => {
  fx = await startFixture({ as: 'record', lambdas: { notify: async (payload) => void invoked.push(payload) } });
  // Pointed at the local endpoint, which serves no Logs API: a log lookup fails fast and offline.
  d = { ...fx.deps, logs: new CloudWatchLogsClient({ endpoint: fx.local.env.AWS_ENDPOINT_URL_SFN, maxAttempts: 1 }) };
});
afterAll(async () => {
  d?.logs.destroy();
  await fx?.stop();
});

const reread = async (t: TrainingRecord) => (await d.store.getTraining(t.id))!;
const SERVING = `registry.local/alice/portrait@sha256:${'e'.repeat(64)}`;
const build = { id: 'build:1', digest: [`sha256:${DIGEST}`], image: [`registry.local/alice/portrait@sha256:${DIGEST}`], serving_image: [SERVING] };
const codeBuildCause = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    Build: {
      BuildStatus: 'FAILED',
      Phases: [
        { PhaseType: 'INSTALL', PhaseStatus: 'SUCCEEDED' },
        { PhaseType: 'BUILD', PhaseStatus: 'FAILED' },
      ],
      Logs: { GroupName: '/aws/codebuild/build-model', StreamName: 'abc' },
    },
    ...extra,
  });

describe('version', () => {
  it('sends the output event to the notify function when the training asked for it', async () => {
    const emit = lambdaEmitter(lambda(), 'notify');
    const t = await newTraining(d, { model: 'alice/events', status: 'pushing', webhook: 'http://127.0.0.1:9/hook', webhook_events_filter: ['output', 'completed'] });
    await record({ ...d, emit }, { action: 'version', training_id: t.id, build });
    await pollUntil(() => invoked.find((p) => (p as { training_id: string }).training_id === t.id), { what: 'the output event' });
    expect(invoked).toContainEqual({ training_id: t.id, event: 'output' });
  });

  it('writes the version and marks the training succeeded', async () => {
    const t = await newTraining(d, { status: 'pushing', task_token: 'stale-token' });
    expect(await record(d, { action: 'version', training_id: t.id, build })).toEqual({ status: 'succeeded' });

    const after = await reread(t);
    expect(after).toMatchObject({ status: 'succeeded', version: DIGEST, image: build.image[0], task_token: null });
    expect(after.completed_at).not.toBeNull();
    expect(await d.store.getVersion('alice/portrait', DIGEST)).toMatchObject({
      id: DIGEST,
      model: 'alice/portrait',
      notes: 'first try',
      training_id: t.id,
      template: t.template,
      serving_image: SERVING,
    });
  });

  it('records a version without a SageMaker variant when the build exported none', async () => {
    const t = await newTraining(d, { model: 'alice/unserved', status: 'pushing' });
    await record(d, { action: 'version', training_id: t.id, build: { ...build, serving_image: [] } });
    const version = await d.store.getVersion('alice/unserved', DIGEST);
    expect(version).not.toBeNull();
    expect(version).not.toHaveProperty('serving_image');
  });

  it('refuses a build that exported no digest', async () => {
    const t = await newTraining(d, { status: 'pushing' });
    const err = await record(d, { action: 'version', training_id: t.id, build: { id: 'b', digest: ['oops'], image: [] } }).catch((e: Error) => e);
    expect((err as Error).name).toBe('TrainerFailed');
    expect((await reread(t)).status).toBe('pushing');
  });

  it.each([
    ['canceled through the API', { status: 'canceled', cancel_requested: true }],
    ['with a cancel requested mid-push', { status: 'pushing', cancel_requested: true }],
  ] as const)('does not flip a training %s to succeeded', async (_what, over) => {
    const t = await newTraining(d, over);
    await record(d, { action: 'version', training_id: t.id, build });
    const after = await reread(t);
    expect(after.status).toBe(over.status);
    expect(after.version).toBeNull();
  });
});

describe('failure', () => {
  it('a CodeBuild failure names the phase and carries the log tail', async () => {
    const t = await newTraining(d, { status: 'pushing', task_token: 'stale-token' });
    const tail = 'Step 2/2 : COPY weights /src/weights\nno space left on device';
    const out = await record(d, { action: 'failure', training_id: t.id, error: { Error: 'States.TaskFailed', Cause: codeBuildCause({ log_tail: tail }) } });

    expect(out).toEqual({ status: 'failed' });
    const after = await reread(t);
    expect(after).toMatchObject({ status: 'failed', task_token: null });
    expect(after.error).toContain('the image build failed in phase BUILD');
    expect(after.error).toContain(tail);
    expect(after.completed_at).not.toBeNull();
  });

  it('a build cause inside a Lambda error envelope is unwrapped', async () => {
    const t = await newTraining(d, { status: 'pushing' });
    const Cause = JSON.stringify({ errorType: 'BuildFailed', errorMessage: codeBuildCause({ log_tail: 'exit status 1' }) });
    await record(d, { action: 'failure', training_id: t.id, error: { Error: 'BuildFailed', Cause } });
    expect((await reread(t)).error).toMatch(/phase BUILD:\nexit status 1$/);
  });

  it('a Lambda error keeps its message', async () => {
    const t = await newTraining(d, { status: 'processing' });
    const Cause = JSON.stringify({ errorType: 'BadArchive', errorMessage: "the trainer's output archive is not usable: no model_index.json" });
    await record(d, { action: 'failure', training_id: t.id, error: { Error: 'BadArchive', Cause } });
    expect((await reread(t)).error).toBe("the trainer's output archive is not usable: no model_index.json");
  });

  it('after a cancel through the API the training stays canceled with no error', async () => {
    const t = await newTraining(d, { status: 'canceled', cancel_requested: true, completed_at: '2030-01-01T00:00:00.000Z' });
    const out = await record(d, { action: 'failure', training_id: t.id, error: { Error: 'States.TaskFailed', Cause: codeBuildCause() } });
    expect(out).toEqual({ status: 'canceled' });
    expect(await reread(t)).toMatchObject({ status: 'canceled', error: null, completed_at: '2030-01-01T00:00:00.000Z' });
  });

  it('a TrainingCanceled error records canceled', async () => {
    const t = await newTraining(d, { status: 'processing' });
    await record(d, { action: 'failure', training_id: t.id, error: { Error: 'TrainingCanceled', Cause: 'the training was canceled' } });
    expect(await reread(t)).toMatchObject({ status: 'canceled', error: null });
  });

  it('does not overwrite a training that already succeeded', async () => {
    const t = await newTraining(d, { status: 'succeeded', version: DIGEST });
    await record(d, { action: 'failure', training_id: t.id, error: { Error: 'States.Timeout' } });
    expect(await reread(t)).toMatchObject({ status: 'succeeded', error: null, version: DIGEST });
  });
});

describe('webhook_given_up', () => {
  it('webhook_given_up keeps the attempt count and says why', async () => {
    const t = await newTraining(d, { status: 'failed', webhook_outcome: { delivered: false, attempts: 8, last_status: 503, detail: 'HTTP 503' } });
    await record(d, { action: 'webhook_given_up', training_id: t.id, error: { Error: 'WebhookDeliveryFailed', Cause: 'HTTP 503' } });
    expect((await reread(t)).webhook_outcome).toEqual({ delivered: false, attempts: 8, last_status: 503, detail: 'gave up: WebhookDeliveryFailed: HTTP 503' });
  });
});
