/**
 * trainer-callback with the real local DynamoDB, S3, Secrets Manager and Step Functions
 * endpoint: the per-training secret, Cog's bearer token, out-of-order logs, logs past what a
 * DynamoDB item holds, and late duplicates.
 */
import { randomBytes } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callbackSecret } from '#shared/ids';
import { ERROR_MAX_BYTES, LOG_TAIL_BYTES, logKey } from '#shared/run-logs';
import type { TrainingRecord } from '#shared/training';
import { trainerCallback } from '#lambdas/trainer-callback/core';
import { newTraining, startFixture, type Fixture } from '#test-helpers/aws-local';

const COG_TOKEN_SECRET = 'local/cog-webhook-token';
const cogToken = randomBytes(16).toString('hex');
let fx: Fixture;

beforeAll(async () => {
  fx = await startFixture({
    as: 'trainer-callback',
    config: { trainers: { 'cog-auth': { backend: 'cog', url: 'http://127.0.0.1:9', webhook_auth_token_secret: COG_TOKEN_SECRET } } },
    secrets: { [COG_TOKEN_SECRET]: cogToken },
  });
});
afterAll(() => fx?.stop());

const secretOf = (t: TrainingRecord) => callbackSecret(fx.callbackKey, t.id);
const prediction = (t: TrainingRecord, over: Record<string, unknown>) =>
  JSON.stringify({ id: t.run.id, input: t.input, output: null, logs: '', error: null, status: 'processing', ...over });
const call = (t: TrainingRecord, body: string, opts: { secret?: string; headers?: Record<string, string> } = {}) =>
  trainerCallback(fx.deps, t.id, 'secret' in opts ? opts.secret : secretOf(t), { headers: opts.headers ?? {}, body });
const reread = async (t: TrainingRecord) => (await fx.deps.store.getTraining(t.id))!;
const started = (over: Partial<TrainingRecord> = {}) =>
  newTraining(fx.deps, { status: 'processing', run: { id: 'db-run', started: true, terminal: null, output: null }, ...over });

describe('callback secret', () => {
  it.each([
    ['a wrong', 'not-the-secret'],
    ['a missing', undefined],
  ])('%s secret is 401 and changes nothing', async (_what, secret) => {
    const t = await started();
    const before = await reread(t);
    const out = await call(t, prediction(t, { status: 'succeeded', output: 'http://127.0.0.1:9/o.zip' }), { secret });
    expect(out.status).toBe(401);
    expect(await reread(t)).toEqual(before);
  });

  it("another training's secret is 401", async () => {
    const [a, b] = [await started(), await started()];
    expect((await call(a, prediction(a, {}), { secret: secretOf(b) })).status).toBe(401);
  });
});

describe('progress', () => {
  it('a processing callback with logs records them and the processing status', async () => {
    const t = await newTraining(fx.deps, { run: { id: 'db-run', started: true, terminal: null, output: null } });
    const out = await call(t, prediction(t, { logs: 'step 1/10\nstep 2/10\n' }));
    expect(out.status).toBe(200);
    const after = await reread(t);
    expect(after).toMatchObject({ status: 'processing', logs: 'step 1/10\nstep 2/10\n', run: { terminal: null } });
    expect(after.started_at).not.toBeNull();
  });

  it('an older, shorter log arriving later is ignored', async () => {
    const t = await started();
    await call(t, prediction(t, { logs: 'step 1/10\nstep 2/10\nstep 3/10\n' }));
    expect((await call(t, prediction(t, { logs: 'step 1/10\n' }))).status).toBe(200);
    expect((await reread(t)).logs).toBe('step 1/10\nstep 2/10\nstep 3/10\n');
  });

  it('a callback of another run is ignored', async () => {
    const t = await started();
    const out = await call(t, prediction(t, { id: 'db-other', status: 'failed', error: 'boom' }));
    expect(out).toEqual({ status: 200, body: { detail: 'ignored: another run' } });
    expect((await reread(t)).run.terminal).toBeNull();
  });

  it('a body that is not a prediction is 400', async () => {
    const t = await started();
    expect((await call(t, 'not json')).status).toBe(400);
    expect((await call(t, prediction(t, { status: 'exploded' }))).status).toBe(400);
  });
});

describe('a log longer than a DynamoDB item holds', () => {
  /** A chatty run's log: progress bars of multi-byte characters, 3 bytes each in UTF-8. */
  const chatty = (lines: number) => Array.from({ length: lines }, (_, i) => `step ${i + 1}/${lines} |${'█'.repeat(40)}| loss 0.1234\n`).join('');
  /** The log as the bucket holds it, or null when it holds none. */
  async function whole(t: TrainingRecord): Promise<string | null> {
    try {
      const out = await fx.operator.s3.send(new GetObjectCommand({ Bucket: fx.deps.bucket, Key: logKey(t.id) }));
      return await out.Body!.transformToString('utf8');
    } catch (e) {
      if ((e as Error).name === 'NoSuchKey') return null;
      throw e;
    }
  }

  it('keeps its tail, from a line start, in the record and the whole log in the bucket, overwritten by longer ones', async () => {
    const t = await started();
    const first = chatty(3000);
    expect(Buffer.byteLength(first)).toBeGreaterThan(400 * 1024);
    expect((await call(t, prediction(t, { logs: first }))).status).toBe(200);
    const after = await reread(t);
    expect(Buffer.byteLength(after.logs!)).toBeLessThanOrEqual(LOG_TAIL_BYTES);
    expect(Buffer.byteLength(after.logs!)).toBeGreaterThan(LOG_TAIL_BYTES - 200);
    expect(first.endsWith(after.logs!)).toBe(true);
    expect(after.logs).toMatch(/^step \d+\/3000 /);
    expect(after.logs_length).toBe(first.length);
    expect(await whole(t)).toBe(first);

    const longer = first + chatty(10);
    await call(t, prediction(t, { logs: longer }));
    expect(await whole(t)).toBe(longer);
    // An older update arriving late changes neither.
    await call(t, prediction(t, { logs: first }));
    expect(await whole(t)).toBe(longer);
    expect((await reread(t)).logs_length).toBe(longer.length);
  });

  it('a short log stays whole in the record, and nothing goes to the bucket', async () => {
    const t = await started();
    await call(t, prediction(t, { logs: chatty(10) }));
    expect((await reread(t)).logs).toBe(chatty(10));
    expect(await whole(t)).toBeNull();
  });

  it('a run that succeeds with a log of over 600 KB (under 300,000 characters) succeeds', async () => {
    const task = await fx.waitingTask();
    const t = await started({ task_token: task.token });
    const log = chatty(4200);
    expect(log.length).toBeLessThan(400 * 1024);
    expect(Buffer.byteLength(log)).toBeGreaterThan(600 * 1024);
    const output = 'http://127.0.0.1:9/uploads/output.zip';
    expect((await call(t, prediction(t, { status: 'succeeded', output, logs: log }))).status).toBe(200);
    expect(await fx.finished(task.executionArn)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await whole(t)).toBe(log);
  });
});

describe('completion', () => {
  it('succeeded with output completes the waiting task with the output URL', async () => {
    const task = await fx.waitingTask();
    const t = await started({ task_token: task.token });
    const output = 'http://127.0.0.1:9/uploads/output.zip';
    const out = await call(t, prediction(t, { status: 'succeeded', output, metrics: { predict_time: 42.5 } }));

    expect(out.status).toBe(200);
    expect(await reread(t)).toMatchObject({ predict_time: 42.5, run: { terminal: 'succeeded', output } });
    const done = await fx.finished(task.executionArn);
    expect(done.status).toBe('SUCCEEDED');
    expect(JSON.parse(done.output!)).toEqual({ status: 'succeeded', output_url: output, predict_time: 42.5 });
  });

  it('succeeded without output is a failure that says so', async () => {
    const task = await fx.waitingTask();
    const t = await started({ task_token: task.token });
    expect((await call(t, prediction(t, { status: 'succeeded', output: null }))).status).toBe(200);

    const after = await reread(t);
    expect(after.run.terminal).toBe('failed');
    expect(after.error).toMatch(/success without an output archive/);
    const done = await fx.finished(task.executionArn);
    expect(done).toMatchObject({ status: 'FAILED', error: 'TrainerFailed' });
    expect(done.cause).toMatch(/--upload-url/);
  });

  it("a trainer's error longer than a DynamoDB item holds fails the run with the error's end", async () => {
    const task = await fx.waitingTask();
    const t = await started({ task_token: task.token });
    const frames = Array.from({ length: 7000 }, (_, i) => `  File "/src/train.py", line ${i}, in step\n    ▶ loss.backward()\n`).join('');
    const error = `Traceback (most recent call last):\n${frames}RuntimeError: CUDA out of memory`;
    expect(Buffer.byteLength(error)).toBeGreaterThan(400 * 1024);
    expect((await call(t, prediction(t, { status: 'failed', error }))).status).toBe(200);

    const after = await reread(t);
    expect(after.run.terminal).toBe('failed');
    expect(Buffer.byteLength(after.error!)).toBeLessThanOrEqual(ERROR_MAX_BYTES);
    // Cut at a line start, so the record holds whole frames and the exception.
    expect(after.error).toMatch(/^…\n( {2}File | {4}▶ ).*RuntimeError: CUDA out of memory$/s);
    expect(await fx.finished(task.executionArn)).toMatchObject({ status: 'FAILED', error: 'TrainerFailed' });
  });

  it('a duplicate terminal callback is a 200 no-op', async () => {
    const t = await started({ task_token: 'A'.repeat(43) });
    await call(t, prediction(t, { status: 'failed', error: 'CUDA out of memory' }));
    const before = await reread(t);
    expect(before.error).toBe('the trainer failed: CUDA out of memory');

    const out = await call(t, prediction(t, { status: 'succeeded', output: 'http://127.0.0.1:9/late.zip' }));
    expect(out).toEqual({ status: 200, body: { detail: 'ignored: run already over' } });
    expect(await reread(t)).toEqual(before);
  });
});

describe("Cog's bearer token", () => {
  const authed = () => started({ trainer: 'cog-auth' });

  it.each([
    ['missing', {}],
    ['wrong', { authorization: 'Bearer not-the-token' }],
    ['another scheme', { authorization: `Basic ${cogToken}` }],
  ])('a %s bearer is 401 and changes nothing', async (_what, headers) => {
    const t = await authed();
    const before = await reread(t);
    const out = await call(t, prediction(t, { status: 'failed', error: 'forged' }), { headers });
    expect(out.status).toBe(401);
    expect(await reread(t)).toEqual(before);
  });

  it('the configured bearer is accepted', async () => {
    const t = await authed();
    const out = await call(t, prediction(t, { logs: 'hello' }), { headers: { authorization: `Bearer ${cogToken}` } });
    expect(out.status).toBe(200);
    expect((await reread(t)).logs).toBe('hello');
  });
});
