/**
 * End to end through local mode with a `replicate` trainer pointed at a fake Replicate API:
 * success into an image, forged webhooks refused, a lost terminal webhook recovered by the
 * wait loop's polling, a failed prediction, and cancel forwarded to Replicate.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { webhookHeaders } from '#shared/webhook-signing';
import { startFakeReplicate, type FakePrediction, type FakeReplicate } from '#test-helpers/fake-replicate';
import { inspectImage } from '#test-helpers/images';
import { startLocal, waitFor, type Local } from '#test-helpers/local-mode';

const VERSION = 'cd3f925f7ab21afaef7d45224790eedbb837eeac40d22e8fefe015489ab644aa';
const TOKEN_SECRET = 'replicate/api-token';
const INPUT = { instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', instance_data: 'https://example.com/person.zip' };
const terminal = (s: string) => ['succeeded', 'failed', 'canceled'].includes(s);

describe('local mode with the replicate backend', () => {
  let local: Local;
  let fake: FakeReplicate;

  beforeAll(async () => {
    fake = await startFakeReplicate();
    // The version's openapi_schema, as Replicate answers GET /v1/models/{owner}/{name}/versions/{id}.
    fake.versions.set('replicate/dreambooth', {
      id: VERSION,
      openapi_schema: { components: { schemas: { Input: { type: 'object', required: ['instance_prompt', 'class_prompt', 'instance_data'], properties: { instance_prompt: { type: 'string' }, class_prompt: { type: 'string' }, instance_data: { type: 'string', format: 'uri' }, resolution: { type: 'integer', enum: [512, 768] } } } } } },
    });
    local = await startLocal({
      build: 'append',
      registry: process.env.DREAMBOOTH_TEST_REGISTRY,
      config: {
        trainers: { replicate: { backend: 'replicate', api_url: fake.url, api_token_secret: TOKEN_SECRET, replicate_model: 'replicate/dreambooth' } },
        // Short waits, so a lost callback is noticed within seconds; a deadline to match, so the
        // wait loop stays inside an execution's 25,000 history events.
        timeouts: { callback_poll_seconds: 3, callback_heartbeat_seconds: 2, training_seconds: 1800 },
        egress: { allow: ['127.0.0.0/8', '::1/128'] },
      },
      secrets: { [TOKEN_SECRET]: fake.token },
    });
  });
  afterAll(async () => {
    await local?.stop();
    await fake?.close();
  });
  beforeEach(() => {
    fake.behaviour = { stepMs: 150, dropTerminalWebhook: false, failWith: null, hold: false, outputShape: 'string' };
  });

  const create = async (model: string) => {
    const created = await local.api('POST', '/v1/trainings', { input: INPUT, trainer_version: VERSION, model });
    expect(created.status).toBe(201);
    return created.json.id as string;
  };
  const training = async (id: string) => (await local.api('GET', `/v1/trainings/${id}`)).json;
  const finished = (id: string) => waitFor(`training ${id} to finish`, async () => ((t) => (terminal(t.status) ? t : null))(await training(id)));
  const predictionOf = (id: string) =>
    waitFor(`the prediction of ${id}`, async () => [...fake.predictions.values()].find((p) => p.webhook?.includes(`/v1/callbacks/${id}?`)));
  const callsTo = (method: string, path: string) => fake.calls.filter((c) => c.method === method && c.path === path);
  const eventsOf = (p: FakePrediction) => fake.webhooks.filter((w) => w.predictionId === p.id);

  it('trains through Replicate and pushes an image holding the weights', async () => {
    const id = await create('acme/replicated');
    const done = await finished(id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.version).toMatch(/^[0-9a-f]{64}$/);
    expect(done.logs).toContain('Steps: 2/2');

    const p = await predictionOf(id);
    expect(p).toMatchObject({ version: VERSION, input: INPUT });
    expect(callsTo('POST', '/v1/predictions').filter((c) => JSON.parse(c.body).webhook === p.webhook)).toHaveLength(1);
    expect(eventsOf(p).filter((w) => w.event === 'completed')).toEqual([expect.objectContaining({ status: 'succeeded', answer: 200 })]);
    // The archive on the API's origin was fetched with the token.
    const downloads = callsTo('GET', `/v1/files/${p.id}/output.zip`);
    expect(downloads.length).toBeGreaterThan(0);
    expect(downloads.every((c) => c.authorization === `Bearer ${fake.token}`)).toBe(true);

    const version = await local.api('GET', `/v1/models/acme/replicated/versions/${done.version}`);
    expect(version.status).toBe(200);
    const image = await inspectImage(version.json.image);
    expect(image.lastLayerFiles).toContain('src/weights/model_index.json');
    expect(image.lastLayerFiles.some((f) => f.startsWith('src/weights/unet/'))).toBe(true);
  });

  it("checks the input at submit against the version's openapi_schema: 422 naming the field, no prediction", async () => {
    const before = callsTo('POST', '/v1/predictions').length;
    const created = await local.api('POST', '/v1/trainings', { input: { ...INPUT, resolution: 640 }, trainer_version: VERSION, model: 'acme/refused' });
    expect(created.status, JSON.stringify(created.json)).toBe(422);
    expect(created.json.detail).toMatch(new RegExp(`^input\\.resolution: .*512,768.*Replicate version replicate/dreambooth:${VERSION}`));
    expect(callsTo('GET', `/v1/models/replicate/dreambooth/versions/${VERSION}`).every((c) => c.authorization === `Bearer ${fake.token}`)).toBe(true);
    expect(callsTo('POST', '/v1/predictions').length).toBe(before);
  });

  it('refuses forged and stale webhooks with 401 and leaves the training as it was; cancel reaches Replicate', async () => {
    fake.behaviour.hold = true;
    const id = await create('acme/forged');
    const p = await predictionOf(id);
    // Held at its last step: wait until local mode has the fake's last progress webhook too, so
    // nothing genuine can arrive between the two reads below.
    await waitFor('the training to process', async () => {
      const t = await training(id);
      return t.status === 'processing' && p.logs.includes('Steps: 2/2') && String(t.logs).includes('Steps: 2/2');
    });
    const before = await training(id);

    const forged = JSON.stringify({ id: p.id, status: 'failed', error: 'forged', logs: '', output: null });
    const otherSecret = `whsec_${Buffer.from('not the account secret').toString('base64')}`;
    for (const headers of [
      { 'content-type': 'application/json' },
      webhookHeaders(otherSecret, 'msg_forged', forged),
      webhookHeaders(fake.secret, 'msg_stale', forged, new Date(Date.now() - 10 * 60_000)),
    ]) {
      const res = await fetch(p.webhook!, { method: 'POST', headers, body: forged });
      expect(res.status).toBe(401);
    }
    const after = await training(id);
    expect(after).toMatchObject({ status: 'processing', error: null, version: null });
    expect(after).toEqual(before);
    // The same URL with a genuine signature is accepted: the 401s above were the signature's.
    const genuine = JSON.stringify({ id: p.id, status: 'processing', error: null, logs: `${p.logs}still training\n`, output: null });
    expect((await fetch(p.webhook!, { method: 'POST', headers: webhookHeaders(fake.secret, 'msg_genuine', genuine), body: genuine })).status).toBe(200);
    expect((await training(id)).logs).toContain('still training');

    const canceled = await local.api('POST', `/v1/trainings/${id}/cancel`);
    expect(canceled.status).toBe(200);
    expect(canceled.json.status).toBe('canceled');
    const cancels = callsTo('POST', `/v1/predictions/${p.id}/cancel`);
    expect(cancels).toHaveLength(1);
    expect(cancels[0]!.authorization).toBe(`Bearer ${fake.token}`);
    expect(p.status).toBe('canceled');
    expect((await finished(id)).status).toBe('canceled');
  });

  it('recovers a lost terminal webhook by asking Replicate', async () => {
    fake.behaviour.dropTerminalWebhook = true;
    const id = await create('acme/lost-webhook');
    const p = await predictionOf(id);
    const done = await finished(id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(eventsOf(p).map((w) => w.event)).not.toContain('completed');
    expect(callsTo('GET', `/v1/predictions/${p.id}`).length).toBeGreaterThan(0);
  });

  it("fails the training with the prediction's error", async () => {
    fake.behaviour.failWith = 'CUDA out of memory';
    const id = await create('acme/failing');
    const done = await finished(id);
    expect(done.status).toBe('failed');
    expect(done.error).toContain('CUDA out of memory');
    expect(done.version).toBeNull();
  });
});
