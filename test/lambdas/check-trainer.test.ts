/** check-trainer: what the wait loop does when a callback is late, against a real Cog-speaking server. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { callbackUrl } from '#shared/callback';
import type { TrainingRecord } from '#shared/training';
import { checkTrainer } from '#lambdas/check-trainer/core';
import { newTraining, sendJson, startFixture, startServer, type Fixture, type TestServer } from '#test-helpers/aws-local';

let fx: Fixture;
let cog: TestServer;
/** The prediction the fake server runs (BUSY), or null (READY). */
let running: { id: string; status: string; output?: string; logs?: string } | null;

beforeAll(async () => {
  cog = await startServer((req, res) => {
    if (req.url === '/health-check') return sendJson(res, 200, { status: running ? 'BUSY' : 'READY' });
    if (req.method === 'POST') return sendJson(res, running ? 200 : 404, {});
    // Cog validates the request body before anything else; an empty webhook is not a URL.
    if (!/^https?:\/\/./.test(JSON.parse(req.body).webhook ?? 'http://x')) {
      return sendJson(res, 422, { detail: [{ loc: ['body', 'webhook'], msg: 'ensure this value has at least 1 characters' }] });
    }
    const id = decodeURIComponent(req.url.split('/')[2] ?? '');
    if (running?.id !== id) return sendJson(res, 409, { detail: 'Already running a prediction' });
    sendJson(res, 202, running);
  });
  fx = await startFixture({ as: 'check-trainer', config: { trainers: { cog: { backend: 'cog', url: cog.url } } } });
});
afterAll(async () => {
  await cog?.close();
  await fx?.stop();
});
beforeEach(() => {
  running = null;
  cog.requests.length = 0;
});

const justNow = () => new Date().toISOString();
const errorOf = (p: Promise<unknown>) => p.then(() => new Error('no error'), (e: Error) => e);
const started = (over: Partial<TrainingRecord> = {}) =>
  newTraining(fx.deps, { status: 'processing', run: { id: 'db-run', started: true, terminal: null, output: null }, ...over });

describe('checkTrainer', () => {
  it('a run still going on is running, and its logs are kept', async () => {
    const t = await started();
    running = { id: 'db-run', status: 'processing', logs: 'step 7/10' };
    expect(await checkTrainer(fx.deps, t.id, justNow())).toEqual({ status: 'running' });
    expect((await fx.deps.store.getTraining(t.id))!.logs).toBe('step 7/10');
    const put = cog.requests.find((r) => r.method === 'PUT')!;
    expect(JSON.parse(put.body).webhook).toBe(await callbackUrl(fx.deps, t.id));
  });

  it('a run that finished while its callback was lost continues with its output', async () => {
    const t = await started();
    running = { id: 'db-run', status: 'succeeded', output: 'http://127.0.0.1:9/output.zip' };
    expect(await checkTrainer(fx.deps, t.id, justNow())).toEqual({ status: 'succeeded', output_url: 'http://127.0.0.1:9/output.zip', predict_time: null });
  });

  it('an idle trainer means the run is lost: TrainerFailed', async () => {
    const t = await started();
    const err = await errorOf(checkTrainer(fx.deps, t.id, justNow()));
    expect(err.name).toBe('TrainerFailed');
    expect(err.message).toContain('db-run');
  });

  it('a run not started yet goes back to start it, asking nothing', async () => {
    const t = await newTraining(fx.deps);
    expect(await checkTrainer(fx.deps, t.id, justNow())).toEqual({ status: 'running' });
    expect(cog.requests).toHaveLength(0);
  });

  it('past the deadline the run is canceled and the training fails', async () => {
    const t = await started();
    running = { id: 'db-run', status: 'processing' };
    const longAgo = new Date(Date.now() - (fx.deps.config.timeouts.training_seconds + 60) * 1000).toISOString();
    expect((await errorOf(checkTrainer(fx.deps, t.id, longAgo))).name).toBe('TrainingDeadlineExceeded');
    expect(cog.requests.map((r) => `${r.method} ${r.url}`)).toContain('POST /predictions/db-run/cancel');
  });

  it('a run whose terminal callback already arrived settles without asking the trainer', async () => {
    const t = await started({ run: { id: 'db-run', started: true, terminal: 'failed', output: null }, error: 'the trainer failed: boom' });
    const err = await errorOf(checkTrainer(fx.deps, t.id, justNow()));
    expect(err).toMatchObject({ name: 'TrainerFailed', message: 'the trainer failed: boom' });
    expect(cog.requests).toHaveLength(0);
  });
});
