/**
 * start-trainer against a real Cog-speaking server and the real local Step Functions endpoint:
 * re-entered it starts nothing new, and a run that already ended completes the new task token.
 */
import { SendTaskSuccessCommand } from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { callbackSecret } from '#shared/ids';
import { startTrainer } from '#lambdas/start-trainer/core';
import { createUpload } from '#lambdas/upload/core';
import { newTraining, PUBLIC_URL, sendJson, startFixture, startServer, type Fixture, type TestServer } from '#test-helpers/aws-local';

let fx: Fixture;
let cog: TestServer;
/** Prediction ids the fake Cog server has accepted; it is BUSY while it holds one. */
let running: string | null;
/** Runs the fake Cog server started (a PUT of the id it runs only answers its state). */
let starts: number;

beforeAll(async () => {
  cog = await startServer((req, res) => {
    if (req.url === '/health-check') return sendJson(res, 200, { status: running ? 'BUSY' : 'READY' });
    const id = decodeURIComponent(req.url.split('/')[2] ?? '');
    if (running && running !== id) return sendJson(res, 409, { detail: 'Already running a prediction' });
    if (!running) starts++;
    running = id;
    sendJson(res, 202, { id, status: 'processing', logs: '', output: null });
  });
  fx = await startFixture({ as: 'start-trainer', config: { trainers: { cog: { backend: 'cog', url: cog.url } } } });
});
afterAll(async () => {
  await cog?.close();
  await fx?.stop();
});
beforeEach(() => {
  running = null;
  starts = 0;
  cog.requests.length = 0;
});

const puts = () => cog.requests.filter((r) => r.method === 'PUT');
const errorOf = (p: Promise<unknown>) => p.then(() => new Error('no error'), (e: Error) => e);

describe('startTrainer', () => {
  it('starts the run once; re-entered it registers the new token and only asks about the run', async () => {
    const t = await newTraining(fx.deps);

    expect(await startTrainer(fx.deps, t.id, 'token-one')).toEqual({ started: true });
    const first = await fx.deps.store.getTraining(t.id);
    expect(first).toMatchObject({ status: 'processing', task_token: 'token-one', run: { started: true, terminal: null } });
    expect(first!.started_at).not.toBeNull();

    expect(await startTrainer(fx.deps, t.id, 'token-two')).toEqual({ started: false });
    // The re-entry's question is Cog's check: a PUT of the same id, which starts nothing.
    expect(starts).toBe(1);
    expect(new Set(puts().map((r) => r.url)).size).toBe(1);
    expect((await fx.deps.store.getTraining(t.id))!.task_token).toBe('token-two');
  });

  it("starts a pooled trainer's run on its slot's server, and keeps it there when re-entered", async () => {
    const other = await startServer((_req, res) => sendJson(res, 500, { detail: 'the wrong server' }));
    try {
      const d = fx.withConfig({ trainers: { pool: { backend: 'cog', urls: [other.url, cog.url] } } });
      const t = await newTraining(d, { trainer: 'pool', logs: 'waiting for trainer pool: 0 ahead\n' });
      expect(await startTrainer(d, t.id, 'token-one', cog.url)).toEqual({ started: true });
      const started = await d.store.getTraining(t.id);
      expect(started!.run.server).toBe(cog.url);
      // The queue's line is gone: from here the logs are the trainer's.
      expect(started!.logs ?? '').not.toContain('waiting for trainer');
      // Re-entered with another slot's server (a redrive), the run stays where it runs.
      expect(await startTrainer(d, t.id, 'token-two', other.url)).toEqual({ started: false });
      expect((await d.store.getTraining(t.id))!.run.server).toBe(cog.url);
      expect(other.requests).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('gives the trainer our callback route with the per-training secret', async () => {
    const t = await newTraining(fx.deps);
    await startTrainer(fx.deps, t.id, 'token');

    const put = puts()[0]!;
    expect(put.url).toBe(`/predictions/${t.run.id}`);
    expect(put.headers.prefer).toBe('respond-async');
    const webhook = new URL(JSON.parse(put.body).webhook);
    expect(`${webhook.origin}${webhook.pathname}`).toBe(`${PUBLIC_URL}/v1/callbacks/${t.id}`);
    expect(webhook.searchParams.get('secret')).toBe(callbackSecret(fx.callbackKey, t.id));
    expect(JSON.parse(put.body).input).toEqual(t.input);
  });

  it('a busy trainer leaves the run unstarted so the start is retried', async () => {
    running = 'someone-else';
    const t = await newTraining(fx.deps);
    expect((await errorOf(startTrainer(fx.deps, t.id, 'token'))).name).toBe('TrainerBusy');
    expect((await fx.deps.store.getTraining(t.id))!.run.started).toBe(false);
  });

  it('a canceled training starts nothing', async () => {
    const t = await newTraining(fx.deps, { status: 'canceled', cancel_requested: true });
    expect((await errorOf(startTrainer(fx.deps, t.id, 'token'))).name).toBe('TrainingCanceled');
    expect(cog.requests).toHaveLength(0);
  });

  it('a run that already succeeded completes the new wait at once with its output', async () => {
    const output = 'http://127.0.0.1:9/files/output.zip';
    const t = await newTraining(fx.deps, {
      status: 'processing',
      predict_time: 12.5,
      run: { id: 'db-x', started: true, terminal: 'succeeded', output },
    });
    const task = await fx.waitingTask();

    expect(await startTrainer(fx.deps, t.id, task.token)).toEqual({ started: false });
    const done = await fx.finished(task.executionArn);
    expect(done.status).toBe('SUCCEEDED');
    expect(JSON.parse(done.output!)).toEqual({ status: 'succeeded', output_url: output, predict_time: 12.5 });
    expect(cog.requests).toHaveLength(0);
  });

  it('a run that already failed fails the new wait with TrainerFailed and its error', async () => {
    const t = await newTraining(fx.deps, {
      status: 'processing',
      error: 'the trainer failed: CUDA out of memory',
      run: { id: 'db-x', started: true, terminal: 'failed', output: null },
    });
    const task = await fx.waitingTask();

    await startTrainer(fx.deps, t.id, task.token);
    const done = await fx.finished(task.executionArn);
    expect(done.status).toBe('FAILED');
    expect(done.error).toBe('TrainerFailed');
    expect(done.cause).toBe('the trainer failed: CUDA out of memory');
  });

  it.each([
    ['TaskTimedOut', 'closed'],
    ['TaskDoesNotExist', 'A'.repeat(43)],
    ['InvalidToken', 'not-a-token'],
  ])('a token the endpoint answers %s for is a no-op, not an error', async (error, kind) => {
    let token = kind;
    if (kind === 'closed') {
      const task = await fx.waitingTask();
      await fx.deps.sfn.send(new SendTaskSuccessCommand({ taskToken: task.token, output: '{}' }));
      token = task.token;
    }
    // The endpoint really refuses this token…
    expect((await errorOf(fx.deps.sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' })))).name).toBe(error);
    const t = await newTraining(fx.deps, {
      status: 'processing',
      run: { id: 'db-x', started: true, terminal: 'succeeded', output: 'http://127.0.0.1:9/o.zip' },
    });
    // …and start-trainer takes that as "this wait is already over".
    await expect(startTrainer(fx.deps, t.id, token)).resolves.toEqual({ started: false });
  });

  it("hands the trainer a freshly signed URL of our upload, though the client's serving_url expired while the training waited", async () => {
    // Prepare: an upload as the seed's client makes it, whose serving URL expired in the queue
    // (signed two hours ago for a minute, as the upload function's signature dies with its credentials).
    const upload = fx.clientsOf('upload');
    const photos = Buffer.from('PK\u0005\u0006'.padEnd(22, '\0'));
    const { upload_url } = await createUpload(upload, 'photos.zip');
    expect((await fetch(upload_url, { method: 'PUT', headers: { 'content-type': 'application/zip' }, body: photos })).status).toBe(200);
    const key = decodeURIComponent(new URL(upload_url).pathname).slice(`/${upload.bucket}/`.length);
    const signedAt = new Date(Date.now() - 2 * 3600_000);
    const expired = await getSignedUrl(upload.s3, new GetObjectCommand({ Bucket: upload.bucket, Key: key }), { expiresIn: 60, signingDate: signedAt });
    expect((await fetch(expired)).status).toBe(403);
    const t = await newTraining(fx.deps, { input: { instance_prompt: 'a photo of sks person', instance_data: expired } });

    // Act: the training leaves the queue.
    const dequeued = new Date();
    await startTrainer(fx.deps, t.id, 'token');

    // Assess: the trainer downloads the photos with what it was given, signed at dequeue.
    const given = JSON.parse(puts()[0]!.body).input as Record<string, string>;
    expect(given.instance_prompt).toBe('a photo of sks person');
    const url = new URL(given.instance_data!);
    expect(`${url.origin}${url.pathname}`).toBe(`${new URL(expired).origin}${new URL(expired).pathname}`);
    const amzDate = url.searchParams.get('X-Amz-Date')!.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z');
    expect(Date.parse(amzDate)).toBeGreaterThanOrEqual(Math.floor(dequeued.getTime() / 1000) * 1000);
    const download = await fetch(url);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer())).toEqual(photos);
    // The training keeps what its client sent.
    expect((await fx.deps.store.getTraining(t.id))!.input.instance_data).toBe(expired);
  });

  it('leaves a URL that only looks like an upload as it was sent', async () => {
    const lookalike = `http://127.0.0.1:9/${fx.deps.bucket}/uploads/${'0'.repeat(32)}/photos.zip`;
    const t = await newTraining(fx.deps, { input: { instance_data: lookalike } });
    await startTrainer(fx.deps, t.id, 'token');
    expect(JSON.parse(puts()[0]!.body).input.instance_data).toBe(lookalike);
  });
});
