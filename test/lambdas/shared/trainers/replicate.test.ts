/**
 * The replicate backend against a fake Replicate API (a real HTTP server) and the real local
 * DynamoDB, where it keeps each run's prediction id.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as aws from '#shared/aws';
import { parseConfig } from '#shared/config';
import { request } from '#shared/http';
import { newTrainingId, runIdFor } from '#shared/ids';
import {
  backendFor,
  CallbackAuthError,
  resolveTrainer,
  TrainerFailedError,
  TransientError,
  type Run,
} from '#shared/trainers/index';
import { downloadHeaders } from '#shared/trainers/index';
import { DynamoPredictionLedger } from '#shared/trainers/replicate/ledger';
import { outputUrl } from '#shared/trainers/replicate/prediction';
import { ReplicateTrainer } from '#shared/trainers/replicate/trainer';
import { sign, webhookHeaders } from '#shared/webhook-signing';
import { startFakeReplicate, type FakeReplicate } from '#test-helpers/fake-replicate';
import { newTraining, startFixture, startServer, testConfig, type Fixture } from '#test-helpers/aws-local';

const VERSION = 'c'.repeat(64);
const TOKEN_SECRET = 'local/replicate-token';
let fx: Fixture;
let fake: FakeReplicate;
let ledger: DynamoPredictionLedger;

beforeAll(async () => {
  fake = await startFakeReplicate();
  fx = await startFixture({
    // start, check, cancel and downloads run in four functions; each holds this trainer's token.
    as: 'start-trainer',
    config: { trainers: { rep: { backend: 'replicate', api_url: fake.url, api_token_secret: TOKEN_SECRET } } },
    secrets: { [TOKEN_SECRET]: `${fake.token}\n` },
  });
  ledger = new DynamoPredictionLedger(aws.ddb(), fx.local.table);
});
afterAll(async () => {
  await fake?.close();
  await fx?.stop();
});
beforeEach(() => {
  fake.calls.length = 0;
  fake.behaviour = { stepMs: 50, dropTerminalWebhook: false, failWith: null, hold: false, outputShape: 'string' };
});

const trainer = (over: { apiUrl?: string; version?: string | null } = {}) =>
  new ReplicateTrainer({
    apiUrl: over.apiUrl ?? fake.url,
    token: fake.token,
    allow: ['127.0.0.0/8'],
    ledger,
    versionOf: async () => (over.version === undefined ? VERSION : over.version),
    timeoutMs: 5_000,
  });
const run = (): Run => {
  const trainingId = newTrainingId();
  // Nothing listens on port 9: the fake's webhooks fail, which these tests do not need.
  return { trainingId, runId: runIdFor(trainingId), input: { instance_prompt: 'sks dog', max_train_steps: 10 }, callbackUrl: `http://127.0.0.1:9/api/v1/callbacks/${trainingId}?secret=s3cr3t` };
};
const creates = () => fake.calls.filter((c) => c.method === 'POST' && c.path === '/v1/predictions');
const errorOf = (p: Promise<unknown>) => p.then(() => new Error('no error'), (e: Error) => e);
const settled = async (id: string) => {
  await fake.predictions.get(id)!.done;
  return fake.predictions.get(id)!;
};

describe('start', () => {
  it('creates a prediction of the version with our callback as webhook, with the token, and records its id', async () => {
    const r = run();
    const state = await trainer().start(r);

    expect(state).toMatchObject({ status: 'starting', output: null });
    expect(creates()).toHaveLength(1);
    const call = creates()[0]!;
    expect(call.authorization).toBe(`Bearer ${fake.token}`);
    expect(JSON.parse(call.body)).toEqual({
      version: VERSION,
      input: r.input,
      webhook: r.callbackUrl,
      webhook_events_filter: ['start', 'output', 'logs', 'completed'],
    });
    const id = (await ledger.get(r.runId))?.predictionId;
    expect(fake.predictions.get(id!)?.webhook).toBe(r.callbackUrl);
  });

  it('a retried start creates nothing and reports the prediction it already has', async () => {
    const r = run();
    await trainer().start(r);
    const id = (await ledger.get(r.runId))!.predictionId!;
    await settled(id);

    const again = await trainer().start(r);
    expect(creates()).toHaveLength(1);
    expect(again).toMatchObject({ status: 'succeeded', output: `${fake.url}/v1/files/${id}/output.zip` });
  });

  it('refuses to create a second prediction when an earlier create may have happened unrecorded', async () => {
    const r = run();
    await ledger.claim(r.runId);
    const err = await errorOf(trainer().start(r));
    expect(err).toBeInstanceOf(TrainerFailedError);
    expect(err.message).toContain('start a new one');
    expect(creates()).toHaveLength(0);
  });

  it('gives the claim back when the create surely never left, so the retry creates', async () => {
    const closed = await startServer(() => undefined);
    const deadUrl = closed.url;
    await closed.close();
    const r = run();
    expect(await errorOf(trainer({ apiUrl: deadUrl }).start(r))).toBeInstanceOf(TransientError);
    expect(await ledger.get(r.runId)).toBeNull();

    expect((await trainer().start(r)).status).toBe('starting');
    expect(creates()).toHaveLength(1);
  });

  it('keeps the claim when the create may have landed (no answer in time), so the retry creates nothing', async () => {
    const silent = await startServer(() => new Promise(() => undefined));
    const slow = new ReplicateTrainer({ apiUrl: silent.url, token: fake.token, allow: ['127.0.0.0/8'], ledger, versionOf: async () => VERSION, timeoutMs: 300 });
    const r = run();
    expect(await errorOf(slow.start(r))).toBeInstanceOf(TransientError);
    await silent.close();
    expect(await ledger.get(r.runId)).toEqual({ predictionId: null });

    expect(await errorOf(trainer().start(r))).toBeInstanceOf(TrainerFailedError);
    expect(creates()).toHaveLength(0);
  });

  it('gives the claim back when Replicate refuses the create, and says why without the token', async () => {
    const bad = new ReplicateTrainer({ apiUrl: fake.url, token: 'r8_wrong', allow: ['127.0.0.0/8'], ledger, versionOf: async () => VERSION });
    const r = run();
    const refused = await errorOf(bad.start(r));
    expect(refused).toBeInstanceOf(TrainerFailedError);
    expect(refused.message).toContain('HTTP 401');
    expect(refused.message).not.toContain('r8_wrong');
    expect(await ledger.get(r.runId)).toBeNull();
  });

  it('fails clearly without a version to run, before calling Replicate', async () => {
    const err = await errorOf(trainer({ version: 'rep' }).start(run()));
    expect(err).toBeInstanceOf(TrainerFailedError);
    expect(err.message).toContain('64-hex trainer_version');
    expect(fake.calls).toHaveLength(0);
  });
});

describe('check', () => {
  it('reports processing, then success with the output archive URL', async () => {
    fake.behaviour.hold = true;
    const r = run();
    await trainer().start(r);
    const id = (await ledger.get(r.runId))!.predictionId!;
    await waitUntil(() => fake.predictions.get(id)!.status === 'processing');
    expect(await trainer().check(r)).toMatchObject({ status: 'processing', output: null });
    expect(fake.calls.at(-1)).toMatchObject({ method: 'GET', path: `/v1/predictions/${id}`, authorization: `Bearer ${fake.token}` });

    fake.predictions.get(id)!.behaviour.hold = false;
    await settled(id);
    const done = await trainer().check(r);
    expect(done).toMatchObject({ status: 'succeeded', output: `${fake.url}/v1/files/${id}/output.zip`, error: null });
    expect((done as { logs: string }).logs).toContain('Steps: 2/2');
    expect((done as { predict_time: number }).predict_time).toBeGreaterThan(0);
  });

  it('reports a failed prediction with its error', async () => {
    fake.behaviour.failWith = 'CUDA out of memory';
    const r = run();
    await trainer().start(r);
    await settled((await ledger.get(r.runId))!.predictionId!);
    expect(await trainer().check(r)).toMatchObject({ status: 'failed', error: 'CUDA out of memory' });
  });

  it('finds the archive among a list or an object of outputs', async () => {
    for (const shape of ['list', 'object'] as const) {
      fake.behaviour.outputShape = shape;
      const r = run();
      await trainer().start(r);
      const id = (await ledger.get(r.runId))!.predictionId!;
      await settled(id);
      expect(await trainer().check(r)).toMatchObject({ status: 'succeeded', output: `${fake.url}/v1/files/${id}/output.zip` });
    }
    expect(outputUrl(['https://x.test/a.png', 'https://x.test/b.png'])).toBeNull();
    expect(outputUrl({ weights: 'https://x.test/trained' })).toBe('https://x.test/trained');
  });

  it('is lost when Replicate answers 404, or when no prediction id was recorded', async () => {
    const r = run();
    await ledger.claim(r.runId);
    await ledger.record(r.runId, 'gone0000000000000000000000');
    expect(await trainer().check(r)).toBe('lost');
    expect(fake.calls.at(-1)).toMatchObject({ method: 'GET', path: '/v1/predictions/gone0000000000000000000000' });
    expect(await trainer().check(run())).toBe('lost');
  });
});

describe('cancel', () => {
  it('cancels the recorded prediction with the token', async () => {
    fake.behaviour.hold = true;
    const r = run();
    await trainer().start(r);
    const id = (await ledger.get(r.runId))!.predictionId!;
    await trainer().cancel(r.runId);
    expect(fake.calls.at(-1)).toMatchObject({ method: 'POST', path: `/v1/predictions/${id}/cancel`, authorization: `Bearer ${fake.token}` });
    expect((await settled(id)).status).toBe('canceled');
  });

  it('asks nothing when the run has no prediction', async () => {
    await trainer().cancel(run().runId);
    expect(fake.calls).toHaveLength(0);
  });
});

describe('parseCallback', () => {
  const body = JSON.stringify({ id: 'p1', status: 'succeeded', output: 'https://x.test/output.zip', logs: 'done\n', error: null, metrics: { predict_time: 12.5 } });

  it('accepts a webhook signed with the account secret, fetched once with the token', async () => {
    const state = await trainer().parseCallback({ headers: webhookHeaders(fake.secret, 'msg_1', body), body });
    expect(state).toEqual({ status: 'succeeded', output: 'https://x.test/output.zip', logs: 'done\n', error: null, predict_time: 12.5 });
    // Replicate's id is not our run id: the callback route must not compare them.
    expect(state).not.toHaveProperty('runId');
    await trainer().parseCallback({ headers: webhookHeaders(fake.secret, 'msg_2', body), body });
    const secretCalls = fake.calls.filter((c) => c.path === '/v1/webhooks/default/secret');
    expect(secretCalls.length).toBeLessThanOrEqual(1);
    for (const c of secretCalls) expect(c.authorization).toBe(`Bearer ${fake.token}`);
  });

  it.each([
    ['no signature', () => ({})],
    ['another secret', () => webhookHeaders(`whsec_${Buffer.from('not the account secret').toString('base64')}`, 'msg_3', body)],
    ['a signature of another body', () => webhookHeaders(fake.secret, 'msg_4', body.replace('succeeded', 'failed'))],
    ['a timestamp 6 minutes old', () => webhookHeaders(fake.secret, 'msg_5', body, new Date(Date.now() - 6 * 60_000))],
    ['a timestamp 6 minutes ahead', () => webhookHeaders(fake.secret, 'msg_6', body, new Date(Date.now() + 6 * 60_000))],
    ['an unknown signature version', () => ({ ...webhookHeaders(fake.secret, 'msg_7', body), 'webhook-signature': sign(fake.secret, 'msg_7', Math.floor(Date.now() / 1000), body).replace('v1,', 'v2,') })],
  ])('refuses %s', async (_what, headers) => {
    const err = await errorOf(trainer().parseCallback({ headers: headers(), body }));
    expect(err).toBeInstanceOf(CallbackAuthError);
  });
});

describe('downloads', () => {
  it('sends the token to the API origin only, and the output needs it', async () => {
    const r = run();
    await trainer().start(r);
    const id = (await ledger.get(r.runId))!.predictionId!;
    const url = (await settled(id)).output as string;

    // As stage-weights asks: by the trainer's name, the token read from its secret.
    expect(await downloadHeaders(fx.deps.config, 'rep', fx.deps, 'https://replicate.delivery/pbxt/x/output.zip')).toEqual({});
    const headers = await downloadHeaders(fx.deps.config, 'rep', fx.deps, url);
    expect(headers).toEqual({ authorization: `Bearer ${fake.token}` });
    const allow = ['127.0.0.0/8'];
    expect((await request(url, { allow })).status).toBe(401);
    const ok = await request(url, { allow, headers });
    expect(ok.status).toBe(200);
    expect(ok.body.subarray(0, 2).toString()).toBe('PK');
  });
});

describe('configuration', () => {
  it('backendFor builds it from the token secret and runs the version the training names', async () => {
    const t = await newTraining(fx.deps, { trainer: 'rep', trainer_backend: 'replicate', trainer_version: VERSION });
    const backend = await backendFor(fx.deps.config, 'rep', fx.deps);
    const state = await backend.start({ trainingId: t.id, runId: t.run.id, input: t.input, callbackUrl: 'http://127.0.0.1:9/cb' });
    expect(state.status).toBe('starting');
    expect(creates()[0]!.authorization).toBe(`Bearer ${fake.token}`);
    expect(JSON.parse(creates()[0]!.body).version).toBe(VERSION);
  });

  it('a pinned trainer_version wins over the training', async () => {
    const pinned = 'e'.repeat(64);
    const config = testConfig({ trainers: { rep: { backend: 'replicate', api_url: fake.url, api_token_secret: TOKEN_SECRET, trainer_version: pinned } } });
    const t = await newTraining(fx.deps, { trainer: 'rep', trainer_backend: 'replicate', trainer_version: 'rep' });
    await (await backendFor(config, 'rep', fx.deps)).start({ trainingId: t.id, runId: t.run.id, input: t.input, callbackUrl: 'http://127.0.0.1:9/cb' });
    expect(JSON.parse(creates()[0]!.body).version).toBe(pinned);
  });

  it('a 64-hex trainer_version resolves to the replicate trainer that pins none', () => {
    const base = { templates: { default: 'v', catalog: { v: { repository: 'r8.im/x/v' } } } };
    const rep = { backend: 'replicate', api_token_secret: 's' };
    const open = parseConfig({ ...base, trainers: { demo: { backend: 'demo' }, rep } });
    expect(resolveTrainer(open, VERSION)).toMatchObject({ name: 'rep', version: VERSION, model: 'dreambooth/rep' });
    expect(resolveTrainer(open, 'rep')).toMatchObject({ name: 'rep', version: 'rep' });
    expect(resolveTrainer(open, 'f'.repeat(63))).toBeNull();

    const pinned = parseConfig({ ...base, trainers: { rep: { ...rep, trainer_version: VERSION } } });
    expect(resolveTrainer(pinned, VERSION)).toMatchObject({ name: 'rep', version: VERSION });
    expect(resolveTrainer(pinned, 'd'.repeat(64))).toBeNull();
    expect(resolveTrainer(parseConfig({ ...base, trainers: { demo: { backend: 'demo' } } }), VERSION)).toBeNull();
  });
});

async function waitUntil(fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}
