/**
 * Replicate's predictions API over the local services: real records, the real request object in
 * S3, real StartExecution/StopExecution, presigned URLs downloaded from local S3 with the api's
 * own role, and the real notify function (as a local Lambda) delivering to a real receiver.
 *
 * The fixture runs one state machine (a waiting one); the api is given it as the prediction
 * state machine, so an execution starts and stops for real while the test plays the steps'
 * part by writing the record as they would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as aws from '#shared/aws';
import { errorResponse } from '#shared/errors';
import { logger } from '#shared/log';
import { OciLayout } from '#shared/oci/layout';
import { createDemoTemplate } from '#shared/oci/template';
import { fileKey, type PredictionRecord, requestKey } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { matchPath, ROUTES } from '#shared/routes';
import type { VersionRecord } from '#shared/store';
import { ownerWebhookSecret, verify } from '#shared/webhook-signing';
import { handler as notifyHandler } from '#lambdas/notify/handler';
import { VersionSchemas } from '#lambdas/api/prediction-inputs';
import { route, type ApiDeps, type ApiRequest } from '#lambdas/api/routing';
import { liveRegistry } from '#lambdas/api/templates';
import { pollUntil } from '#infra/local/aws';
import { startFixture, startServer, type Fixture, type TestServer } from '#test-helpers/aws-local';

let fx: Fixture;
let d: ApiDeps;
let receiver: TestServer;
let templateDir: string;
let templateDigest: string;

beforeAll(async () => {
  receiver = await startServer((_req, res) => res.writeHead(200).end());
  // A Cog template whose label carries its OpenAPI schema (`prompt: string`), read as the api reads any template.
  templateDir = mkdtempSync(join(tmpdir(), 'template-'));
  templateDigest = (await createDemoTemplate(new OciLayout(templateDir), '', 'latest')).replace(/^sha256:/, '');
  fx = await startFixture({ as: 'api', lambdas: { notify: (payload) => notifyHandler(payload) } });
  d = {
    ...fx.deps,
    lambda: aws.lambda(),
    stateMachineArn: fx.local.stateMachineArn,
    notifyFunction: 'notify',
    webhookSigningMaster: async () => fx.webhookSecret,
    log: logger('api'),
    templates: liveRegistry(fx.deps.config.egress.allow),
    inputSchemas: { lookup: async () => ({ schema: null, reason: 'trainings are not this test' }) },
    openApi: () => ({}),
    predictions: { stateMachineArn: fx.local.stateMachineArn, s3: async () => fx.deps.s3, schemas: new VersionSchemas(liveRegistry(fx.deps.config.egress.allow)) },
  };
}, 60_000);
afterAll(async () => {
  await receiver?.close();
  await fx?.stop();
  if (templateDir) rmSync(templateDir, { recursive: true, force: true });
});

const hex = (c: string) => c.repeat(64);
let versions = 0;
/** A version written as the record step writes it (with its id's alias). */
async function newVersion(model: string, over: Partial<VersionRecord> = {}): Promise<VersionRecord> {
  const id = (++versions).toString(16).padStart(8, '0') + hex('e').slice(8);
  const v: VersionRecord = {
    id,
    model,
    image: `127.0.0.1:5000/${model}@sha256:${id}`,
    notes: null,
    training_id: 'a'.repeat(26),
    template: { name: 'vanilla', repository: `oci:${templateDir}`, digest: templateDigest },
    created_at: new Date(Date.now() + versions).toISOString(),
    ...over,
  };
  return fx.operator.store.putVersion(v);
}

const req = (method: string, path: string, body: unknown = null, over: Partial<ApiRequest> = {}): ApiRequest => {
  const m = matchPath(ROUTES.map((r) => r.path), path.split('?')[0]!)!;
  const query = Object.fromEntries(new URLSearchParams(path.split('?')[1] ?? ''));
  return { method, resource: m.path, params: m.pathParameters, query, body: body === null ? null : JSON.stringify(body), owners: ['alice'], ...over };
};
type Answer = { status: number; body: Record<string, unknown> & { detail?: string } };
const answer = async (r: ApiRequest, deps: ApiDeps = d): Promise<Answer> => {
  try {
    return (await route(deps, r)) as Answer;
  } catch (e) {
    const res = errorResponse(e);
    return { status: res.statusCode, body: JSON.parse(res.body) };
  }
};
const predictions = () => new PredictionStore(fx.operator.store);
const executionArn = (id: string) => `${fx.local.stateMachineArn.replace(':stateMachine:', ':execution:')}:${id}`;
/** Finishes a prediction as the state machine's steps would. */
const finish = (id: string, fields: Partial<PredictionRecord>) =>
  predictions().update(id, { status: 'succeeded', started_at: new Date().toISOString(), completed_at: new Date().toISOString(), predict_time: 0.2, ...fields });

describe('create', () => {
  it('by version id: the record (starting, expiring after retention.prediction_days), the whole request in S3, the execution named by the id', async () => {
    const v = await newVersion('alice/cjw');
    const picture = `data:image/png;base64,${Buffer.alloc(3000, 7).toString('base64')}`;
    const before = Math.floor(Date.now() / 1000);
    const out = await answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: 'a photo of cjw person', image: picture } }));
    expect(out.status).toBe(201);
    const id = out.body.id as string;
    expect(out.body).toMatchObject({ model: 'alice/cjw', version: v.id, status: 'starting', output: null, urls: { get: `${d.publicUrl}/v1/predictions/${id}` } });
    // The record keeps a long data URI short; the request object holds it whole.
    expect(out.body.input).toEqual({ prompt: 'a photo of cjw person', image: 'data:image/png;base64,…(3000 bytes)' });
    const p = (await predictions().get(id))!;
    expect(p).toMatchObject({ owner: 'alice', status: 'starting' });
    expect(p.expiration - before).toBeGreaterThanOrEqual(86_400);
    expect(p.expiration - before).toBeLessThan(86_400 + 60);
    const obj = await fx.operator.s3.send(new GetObjectCommand({ Bucket: fx.local.bucket, Key: requestKey(id) }));
    expect(JSON.parse(await obj.Body!.transformToString())).toEqual({ input: { prompt: 'a photo of cjw person', image: picture }, id });
    expect(JSON.parse(fx.local.executions.get(executionArn(id))!.input)).toEqual({ prediction_id: id });
  });

  it('by owner/name:version, and by the model route (its latest version)', async () => {
    const old = await newVersion('alice/pinned');
    const latest = await newVersion('alice/pinned');
    const pinned = await answer(req('POST', '/v1/predictions', { version: `alice/pinned:${old.id}`, input: { prompt: 'x' } }));
    expect(pinned).toMatchObject({ status: 201, body: { version: old.id, model: 'alice/pinned' } });
    const byModel = await answer(req('POST', '/v1/models/alice/pinned/predictions', { input: { prompt: 'x' } }));
    expect(byModel).toMatchObject({ status: 201, body: { version: latest.id, model: 'alice/pinned' } });
  });

  it('an unknown version, or another owner\'s, is 404 with a detail that says what to use', async () => {
    const bobs = await newVersion('bob/secret');
    const unknown = await answer(req('POST', '/v1/predictions', { version: hex('9'), input: { prompt: 'x' } }));
    expect(unknown.status).toBe(404);
    expect(unknown.body.detail).toMatch(/^version: no version 9{64} for this token \(a version pushed before predictions existed is found as owner\/name:9{64}\)$/);
    for (const version of [bobs.id, `bob/secret:${bobs.id}`]) {
      expect(await answer(req('POST', '/v1/predictions', { version, input: { prompt: 'x' } }))).toMatchObject({ status: 404 });
    }
    expect(await answer(req('POST', '/v1/models/bob/secret/predictions', { input: { prompt: 'x' } }))).toMatchObject({ status: 404, body: { detail: expect.stringMatching(/^model bob\/secret not found/) } });
    // Bob's own token runs it.
    expect(await answer(req('POST', '/v1/predictions', { version: bobs.id, input: { prompt: 'x' } }, { owners: ['bob'] }))).toMatchObject({ status: 201 });
  });

  it('an input the version\'s schema refuses is 422 naming the field; a bad body or URL is 400; nothing is recorded', async () => {
    const v = await newVersion('alice/strict');
    const bad = await answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: 5 } }));
    expect(bad.status).toBe(422);
    expect(bad.body.detail).toMatch(/^input\.prompt: .*string.* \(the input schema of alice\/strict:/);
    expect((await answer(req('POST', '/v1/predictions', { version: v.id }))).body.detail).toMatch(/^input: is required/);
    expect((await answer(req('POST', '/v1/predictions', { version: 'nope', input: {} }))).body.detail).toMatch(/^version: must be a version id/);
    const metadata = await answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: 'x', image: 'http://169.254.169.254/latest/meta-data' } }));
    expect(metadata).toMatchObject({ status: 400, body: { detail: expect.stringMatching(/^input\.image: host 169\.254\.169\.254 is a linkLocal address/) } });
    expect((await predictions().list(['alice'], 100)).results.filter((p) => p.model === 'alice/strict')).toEqual([]);
  });

  it("a weights version's weights input sent by the caller is 422 naming it; nothing is recorded", async () => {
    const weights = { key: `weights/${hex('a')}`, size: 10, sha256: hex('a'), input: 'replicate_weights' };
    const v = await newVersion('alice/lora', { template: { name: 'vanilla', repository: `oci:${templateDir}`, digest: templateDigest, weights_input: 'replicate_weights' }, weights });
    const refused = await answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: 'x', replicate_weights: 'https://example.com/other.tar' } }));
    expect(refused.status).toBe(422);
    expect(refused.body.detail).toMatch(/^input\.replicate_weights: set by the service to this version's weights; leave it out/);
    expect((await predictions().list(['alice'], 100)).results.filter((p) => p.model === 'alice/lora')).toEqual([]);
  });

  it('an Idempotency-Key answers the same prediction for the same request', async () => {
    const v = await newVersion('alice/once');
    const r = req('POST', '/v1/predictions', { version: v.id, input: { prompt: 'x' } }, { idempotencyKey: `k-${v.id}` });
    const first = await answer(r);
    expect(first.status).toBe(201);
    expect((await answer(r)).body.id).toBe(first.body.id);
  });
});

describe('Prefer: wait', () => {
  it('holds the answer until the prediction is terminal', async () => {
    const v = await newVersion('alice/waits');
    const pending = answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: 'x' } }, { prefer: 'wait=20' }));
    // The state machine's part: the prediction succeeds while the api waits.
    const created = await pollUntil(async () => (await predictions().list(['alice'], 100)).results.find((p) => p.model === 'alice/waits'), { what: 'the prediction' });
    await finish(created.id, { output: 'done' });
    const out = await pending;
    expect(out).toMatchObject({ status: 201, body: { id: created.id, status: 'succeeded', output: 'done', metrics: { predict_time: 0.2 } } });
  });

  it('answers the unfinished prediction when the wait is over (the client polls)', async () => {
    const v = await newVersion('alice/slow');
    const out = await answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: 'x' } }, { prefer: 'wait=1' }));
    expect(out).toMatchObject({ status: 201, body: { status: 'starting', output: null } });
  });
});

describe('reads', () => {
  it('lists the token\'s own predictions, newest first, in cursor pages', async () => {
    const v = await newVersion('carol/list');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: `${i}` } }, { owners: ['carol'] }))).body.id as string);
    const small = { ...d, config: fx.withConfig({ limits: { page_size: 2 } }).config };
    const first = await answer(req('GET', '/v1/predictions', null, { owners: ['carol'] }), small);
    expect((first.body.results as { id: string }[]).map((p) => p.id)).toEqual([ids[2], ids[1]]);
    const cursor = new URL(first.body.next as string).searchParams.get('cursor')!;
    const second = await answer(req('GET', `/v1/predictions?cursor=${encodeURIComponent(cursor)}`, null, { owners: ['carol'] }), small);
    expect((second.body.results as { id: string }[]).map((p) => p.id)).toEqual([ids[0]]);
    expect(second.body.next).toBeNull();
    // Alice sees none of them, and gets none by id.
    const alices = await answer(req('GET', '/v1/predictions'));
    expect((alices.body.results as { id: string }[]).filter((p) => ids.includes(p.id))).toEqual([]);
    expect(await answer(req('GET', `/v1/predictions/${ids[0]}`))).toMatchObject({ status: 404 });
  });

  it('shows file outputs as short-lived URLs that download, and sends them in the signed webhook', async () => {
    const v = await newVersion('alice/pictures');
    const created = await answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: 'x' }, webhook: `${receiver.url}/hook?n=1` }));
    const id = created.body.id as string;
    const png = Buffer.from('not really a png');
    await fx.operator.s3.send(new PutObjectCommand({ Bucket: fx.local.bucket, Key: fileKey(id, 0, '.png'), Body: png, ContentType: 'image/png' }));
    await finish(id, { output: [{ $file: fileKey(id, 0, '.png') }] });

    const got = await answer(req('GET', `/v1/predictions/${id}`));
    const [url] = got.body.output as string[];
    expect(url).toMatch(/X-Amz-Signature=/);
    expect(Buffer.from(await (await fetch(url!)).arrayBuffer())).toEqual(png);

    // The state machine's last step: notify, as its own function with its own role.
    const sent = await d.lambda.send(new InvokeCommand({ FunctionName: 'notify', Payload: Buffer.from(JSON.stringify({ prediction_id: id, event: 'completed' })) }));
    expect(JSON.parse(Buffer.from(sent.Payload!).toString())).toMatchObject({ delivered: true, status: 200 });
    const hook = receiver.requests.find((r) => r.url === '/hook?n=1')!;
    expect(verify(ownerWebhookSecret(fx.webhookSecret, 'alice'), hook.headers, hook.body)).toBe(true);
    const body = JSON.parse(hook.body);
    expect(body).toMatchObject({ id, status: 'succeeded', model: 'alice/pictures' });
    expect(Buffer.from(await (await fetch(body.output[0])).arrayBuffer())).toEqual(png);
    expect((await predictions().get(id))!.webhook_outcome).toMatchObject({ delivered: true, attempts: 1, last_status: 200 });
  });
});

describe('cancel', () => {
  it('stops the execution, marks the prediction canceled and sends its webhook; a second cancel changes nothing', async () => {
    const v = await newVersion('alice/cancel');
    const created = await answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: 'x' }, webhook: `${receiver.url}/hook?n=2` }));
    const id = created.body.id as string;
    const out = await answer(req('POST', `/v1/predictions/${id}/cancel`));
    expect(out).toMatchObject({ status: 200, body: { id, status: 'canceled' } });
    expect((await fx.finished(executionArn(id))).status).toBe('ABORTED');
    const hook = await pollUntil(() => receiver.requests.find((r) => r.url === '/hook?n=2'), { what: 'the webhook' });
    expect(JSON.parse(hook.body)).toMatchObject({ id, status: 'canceled' });
    expect(verify(ownerWebhookSecret(fx.webhookSecret, 'alice'), hook.headers, hook.body)).toBe(true);
    const completedAt = (await predictions().get(id))!.completed_at;
    expect(await answer(req('POST', `/v1/predictions/${id}/cancel`))).toMatchObject({ status: 200, body: { status: 'canceled', completed_at: completedAt } });
    expect(await answer(req('POST', `/v1/predictions/${id}/cancel`, null, { owners: ['bob'] }))).toMatchObject({ status: 404 });
  });

  it('leaves a prediction that finished meanwhile as it is', async () => {
    const v = await newVersion('alice/late');
    const id = (await answer(req('POST', '/v1/predictions', { version: v.id, input: { prompt: 'x' } }))).body.id as string;
    await finish(id, { output: 'ok' });
    expect(await answer(req('POST', `/v1/predictions/${id}/cancel`))).toMatchObject({ status: 200, body: { status: 'succeeded', output: 'ok' } });
  });
});
