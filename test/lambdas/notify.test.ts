/**
 * notify: a real webhook receiver on loopback checks what a client of the API would check
 * (Standard Webhooks signature, stable webhook-id, the query string it gave us).
 */
import type http from 'node:http';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { resetRuntimeConfig } from '#shared/runtime-config';
import { seedView, trainingsView, type TrainingRecord } from '#shared/training';
import { ownerWebhookSecret, verify } from '#shared/webhook-signing';
import { notify } from '#lambdas/notify/core';
import { handler } from '#lambdas/notify/handler';
import { newTraining, PUBLIC_URL, startFixture, startServer, type Fixture, type TestServer } from '#test-helpers/aws-local';

let fx: Fixture;
let receiver: TestServer;
/** The status the receiver answers next (then 200). */
let answers: number[];

beforeAll(async () => {
  receiver = await startServer((_req, res: http.ServerResponse) => {
    const status = answers.shift() ?? 200;
    if (status === 302) res.writeHead(302, { location: '/redirect-target' }).end();
    else res.writeHead(status).end();
  });
  fx = await startFixture({ as: 'notify' });
});
afterAll(async () => {
  await receiver?.close();
  await fx?.stop();
});
beforeEach(() => {
  answers = [];
  receiver.requests.length = 0;
});

const finished = (over: Partial<TrainingRecord> = {}) =>
  newTraining(fx.deps, {
    status: 'succeeded',
    version: 'b'.repeat(64),
    completed_at: new Date().toISOString(),
    webhook: `${receiver.url}/hooks/dreambooth?job=42&tag=a%20b`,
    ...over,
  });
const send = (t: TrainingRecord) => notify(fx.deps, fx.webhookSecret, t.id, 'completed');
/** The key `GET /v1/webhooks/default/secret` answers alice, whose trainings these are (test/lambdas/api/webhook-secrets.test.ts). */
const aliceKey = () => ownerWebhookSecret(fx.webhookSecret, 'alice');
const errorOf = (p: Promise<unknown>) => p.then(() => new Error('no error'), (e: Error) => e);
const headersOf = (r: TestServer['requests'][number]) => r.headers as Record<string, string>;

describe('delivery', () => {
  it('POSTs the seed view to the webhook, query string kept, signed so receivers verify it', async () => {
    const t = await finished();
    expect(await send(t)).toMatchObject({ delivered: true, status: 200 });

    expect(receiver.requests).toHaveLength(1);
    const req = receiver.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/hooks/dreambooth?job=42&tag=a%20b');
    expect(req.headers['content-type']).toBe('application/json');
    expect(JSON.parse(req.body)).toEqual(JSON.parse(JSON.stringify(seedView((await fx.deps.store.getTraining(t.id))!))));
    expect(JSON.parse(req.body)).toMatchObject({ id: t.id, status: 'succeeded', version: 'b'.repeat(64), model: 'alice/portrait' });

    expect(verify(aliceKey(), req.headers, req.body)).toBe(true);
    // The reference implementation receivers use agrees.
    expect(() => new Webhook(aliceKey()).verify(req.body, headersOf(req))).not.toThrow();
    expect(verify(`whsec_${Buffer.from('another key').toString('base64')}`, req.headers, req.body)).toBe(false);
    expect((await fx.deps.store.getTraining(t.id))!.webhook_outcome).toMatchObject({ delivered: true, attempts: 1, last_status: 200 });
  });

  it('the handler reads the signing key from Secrets Manager itself, as the Lambda does', async () => {
    process.env.DREAMBOOTH_CONFIG = JSON.stringify(fx.deps.config);
    resetRuntimeConfig();
    const t = await finished();
    expect(await handler({ training_id: t.id, event: 'completed' })).toMatchObject({ delivered: true, status: 200 });
    const req = receiver.requests.at(-1)!;
    expect(verify(aliceKey(), req.headers, req.body)).toBe(true);
  });

  it('a trainings-flavour training gets the Trainings view', async () => {
    const t = await finished({ flavour: 'trainings' });
    await send(t);
    const body = JSON.parse(receiver.requests[0]!.body);
    expect(body).toEqual(JSON.parse(JSON.stringify(trainingsView((await fx.deps.store.getTraining(t.id))!, PUBLIC_URL))));
    expect(body).toMatchObject({
      destination: 'alice/portrait',
      output: { version: `alice/portrait:${'b'.repeat(64)}` },
      urls: { get: `${PUBLIC_URL}/v1/trainings/${t.id}` },
    });
  });

  it('a training without a webhook sends nothing', async () => {
    const t = await finished({ webhook: null });
    expect(await send(t)).toMatchObject({ delivered: false });
    expect(receiver.requests).toHaveLength(0);
  });
});

describe('failures and retries', () => {
  it('500 throws WebhookDeliveryFailed; the retry carries the same webhook-id and a fresh signature', async () => {
    const t = await finished();
    answers = [500];
    const err = await errorOf(send(t));
    expect(err.name).toBe('WebhookDeliveryFailed');
    expect(err.message).not.toContain('job=42');
    expect((await fx.deps.store.getTraining(t.id))!.webhook_outcome).toMatchObject({ delivered: false, attempts: 1, last_status: 500 });

    expect(await send(t)).toMatchObject({ delivered: true });
    const [first, second] = receiver.requests;
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id']);
    expect(verify(aliceKey(), second!.headers, second!.body)).toBe(true);
    expect((await fx.deps.store.getTraining(t.id))!.webhook_outcome).toMatchObject({ delivered: true, attempts: 2 });
  });

  it('410 stops without throwing and records why', async () => {
    const t = await finished();
    answers = [410];
    expect(await send(t)).toMatchObject({ delivered: false, status: 410 });
    expect((await fx.deps.store.getTraining(t.id))!.webhook_outcome).toMatchObject({ delivered: false, last_status: 410, detail: expect.stringContaining('410') });
  });

  it('302 is a failure and the redirect target is never requested', async () => {
    const t = await finished();
    answers = [302];
    expect((await errorOf(send(t))).name).toBe('WebhookDeliveryFailed');
    expect(receiver.requests.map((r) => r.url)).toEqual(['/hooks/dreambooth?job=42&tag=a%20b']);
  });

  it('an unreachable receiver throws WebhookDeliveryFailed', async () => {
    const gone = await startServer((_req, res) => res.end());
    await gone.close();
    const t = await finished({ webhook: `${gone.url}/hook` });
    expect((await errorOf(send(t))).name).toBe('WebhookDeliveryFailed');
    expect((await fx.deps.store.getTraining(t.id))!.webhook_outcome).toMatchObject({ delivered: false, last_status: null });
  });
});
