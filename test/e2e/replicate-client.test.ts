/**
 * Replicate's official JS client, unchanged, pointed at local mode with `baseUrl`: trainings
 * create/get/list/cancel, pagination, the webhook secret, and `validateWebhook` accepting our
 * webhooks — with the Trainings API view and every webhook event the filter asks for. Two more
 * tokens, one per tenant, each read their own owner's webhook secret.
 */
import { randomBytes } from 'node:crypto';
import Replicate, { validateWebhook } from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '#shared/ids';
import { instanceDataZip } from '#infra/local/demo';
import { LOCAL_SECRET_IDS } from '#infra/local/names';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';

let local: Local;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
let replicate: Replicate;
/** Tokens of two tenants (the local token acts for any owner). */
const TENANTS = { acme: `r8_${randomBytes(20).toString('hex')}`, other: `r8_${randomBytes(20).toString('hex')}` };
const tenant = (owner: keyof typeof TENANTS) => new Replicate({ auth: TENANTS[owner], baseUrl: `${local.url}/v1` });

beforeAll(async () => {
  receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(2));
  local = await startLocal({
    registry: process.env.DREAMBOOTH_TEST_REGISTRY,
    config: { trainers: { demo: { backend: 'demo', steps_per_second: 20 } }, limits: { page_size: 2 } },
    secrets: { [LOCAL_SECRET_IDS.apiTokens]: JSON.stringify({ tokens: Object.entries(TENANTS).map(([owner, token]) => ({ name: owner, sha256: sha256Hex(token), owners: [owner] })) }) },
  });
  replicate = new Replicate({ auth: local.token, baseUrl: `${local.url}/v1` });
});
afterAll(async () => {
  await local?.stop();
  await receiver?.stop();
});

const input = (steps: number) => ({ instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', instance_data: `${receiver.base}/person.zip`, max_train_steps: steps });

describe('the official replicate client', () => {
  it('creates a training, follows it to a new version, and receives every event it asked for', async () => {
    const { results: trainers } = (await (await fetch(`${local.url}/v1/trainers`, { headers: { authorization: `Bearer ${local.token}` } })).json()) as { results: { key: string; owner: string; name: string; model: string; version: string }[] };
    const demo = trainers.find((t) => t.key === 'demo')!;

    // The route is built from the listing's coordinates, as a client would.
    const created = await replicate.trainings.create(demo.owner, demo.name, demo.version, {
      destination: 'acme/from-client',
      input: input(60),
      webhook: `${receiver.base}/hook?via=client`,
      webhook_events_filter: ['start', 'output', 'logs', 'completed'],
    });
    expect(created).toMatchObject({ status: 'starting', model: demo.model, version: demo.version, destination: 'acme/from-client' });
    expect(created.urls.get).toBe(`${local.url}/v1/trainings/${created.id}`);

    const done = await waitFor('succeeded', async () => {
      const t = await replicate.trainings.get(created.id);
      return ['succeeded', 'failed', 'canceled'].includes(t.status) ? t : null;
    });
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.output?.version).toMatch(/^acme\/from-client:[0-9a-f]{64}$/);
    expect(done.metrics?.predict_time).toBeGreaterThan(0);
    expect((done.metrics as { total_time?: number }).total_time).toBeGreaterThanOrEqual(done.metrics!.predict_time!);
    expect(Date.parse(done.started_at!)).toBeLessThanOrEqual(Date.parse(done.completed_at!));
    expect(done.logs).toContain('Steps: 60/60');

    // The destination's owner reads its key with the client's own call; another tenant's key differs.
    const secret = await tenant('acme').webhooks.default.secret.get();
    expect(secret.key).toMatch(/^whsec_/);
    const otherKey = (await tenant('other').webhooks.default.secret.get()).key;
    expect(otherKey).toMatch(/^whsec_/);
    expect(otherKey).not.toBe(secret.key);
    // The local token acts for any owner: it names one, and gets the key that owner's token gets.
    const unnamed = await replicate.webhooks.default.secret.get().then(() => null, (e: Error & { response?: Response }) => e);
    expect(unnamed?.response?.status).toBe(400);
    expect(unnamed?.message).toMatch(/\?owner=<owner>/);
    const named = (await (await replicate.request('/webhooks/default/secret', { method: 'GET', params: { owner: 'acme' } })).json()) as { key: string };
    expect(named.key).toBe(secret.key);
    const mine = () => receiver.hooks.filter((h) => h.json?.id === created.id);
    await waitFor('the completed event', async () => mine().some((h) => h.json.status === 'succeeded'), 30_000);
    await waitFor('start, logs and output events', async () => {
      const ids = new Set(mine().map((h) => h.headers['webhook-id']));
      return mine().some((h) => h.json.status === 'processing') && mine().some((h) => h.json.output) && ids.size >= 3;
    }, 30_000);
    for (const hook of mine()) {
      expect(hook.url).toBe('/hook?via=client');
      const request = () => new Request(`${receiver.base}${hook.url}`, {
        method: 'POST',
        headers: hook.headers as Record<string, string>,
        body: hook.body,
      });
      expect(await validateWebhook(request(), secret.key)).toBe(true);
      // Another tenant's key cannot have signed it, so that tenant cannot forge it either.
      expect(await validateWebhook(request(), otherKey)).toBe(false);
      // Trainings view, not the seed's.
      expect(hook.json).toHaveProperty('destination', 'acme/from-client');
    }
    const forged = new Request(`${receiver.base}/hook`, { method: 'POST', headers: mine()[0]!.headers as Record<string, string>, body: mine()[0]!.body + ' ' });
    expect(await validateWebhook(forged, secret.key)).toBe(false);
  });

  it('lists newest first and paginates with absolute next URLs', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      // Valid at submit, failed by the trainer at once (its instance_data is no zip): quick to settle, still listed.
      const t = await replicate.trainings.create('dreambooth', 'demo-trainer', 'demo', { destination: `acme/page-${i}`, input: { ...input(1), instance_data: `${receiver.base}/not-a-zip` } });
      ids.push(t.id);
    }
    const first = await replicate.trainings.list();
    expect(first.results).toHaveLength(2);
    expect(first.results.map((t) => t.id)).toEqual([ids[2], ids[1]]);
    expect(first.next).toMatch(new RegExp(`^${local.url}/v1/trainings\\?cursor=`));

    const seen: string[] = [];
    for await (const page of replicate.paginate(replicate.trainings.list)) seen.push(...page.map((t) => t.id));
    expect(seen.slice(0, 3)).toEqual([ids[2], ids[1], ids[0]]);
    expect(new Set(seen).size).toBe(seen.length);

    const second = (await (await fetch(first.next!, { headers: { authorization: `Bearer ${local.token}` } })).json()) as { previous: string };
    expect(second.previous).toMatch(/cursor=/);
    const back = (await (await fetch(second.previous, { headers: { authorization: `Bearer ${local.token}` } })).json()) as { results: { id: string }[] };
    expect(back.results.map((t: { id: string }) => t.id)).toEqual(first.results.map((t) => t.id));
  });

  it('cancels a training', async () => {
    const t = await replicate.trainings.create('dreambooth', 'demo-trainer', 'demo', { destination: 'acme/cancel', input: input(100_000) });
    await waitFor('a running trainer', async () => (await replicate.trainings.get(t.id)).status === 'processing', 60_000);
    const canceled = await replicate.trainings.cancel(t.id);
    expect(canceled.status).toBe('canceled');
    expect((await replicate.trainings.get(t.id)).status).toBe('canceled');
  });

  it('surfaces our errors as the client\'s ApiError with the detail', async () => {
    const err = await replicate.trainings.get('aaaaaaaaaaaaaaaaaaaaaaaaaa').then(() => null, (e: Error & { response?: Response }) => e);
    expect(err?.name).toBe('ApiError');
    expect(err?.response?.status).toBe(404);
    const bad = await replicate.trainings.create('dreambooth', 'demo-trainer', 'demo', { destination: 'Not Valid' as `${string}/${string}`, input: {} }).then(() => null, (e: Error) => e);
    expect(bad?.message).toMatch(/destination: must be owner\/name/);
    const unknown = await replicate.trainings.create('someone', 'else', 'v1', { destination: 'acme/x', input: {} }).then(() => null, (e: Error) => e);
    expect(unknown?.message).toMatch(/no trainer someone\/else with version v1/);
  });
});

describe('the upload helper', () => {
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${local.url}${path}`, { ...init, headers: { authorization: `Token ${local.token}`, 'content-type': 'application/json', ...init.headers } });

  it('gives a presigned PUT and a serving URL that a training can use as instance_data', async () => {
    const res = await api('/v1/upload/person.zip', { method: 'POST' });
    expect(res.status).toBe(200);
    const { upload_url, serving_url } = (await res.json()) as { upload_url: string; serving_url: string };
    expect(upload_url).toMatch(/X-Amz-Signature=/);

    const early = await api('/v1/trainings', {
      method: 'POST',
      body: JSON.stringify({ input: { ...input(5), instance_data: serving_url }, trainer_version: 'demo', model: 'acme/uploaded' }),
    });
    expect(early.status).toBe(400);
    expect(((await early.json()) as { detail: string }).detail).toMatch(/nothing was uploaded to this serving_url yet/);

    const put = await fetch(upload_url, { method: 'PUT', headers: { 'content-type': 'application/zip' }, body: new Uint8Array(await instanceDataZip(1)) });
    expect(put.status).toBe(200);
    const created = await api('/v1/trainings', {
      method: 'POST',
      body: JSON.stringify({ input: { ...input(5), instance_data: serving_url }, trainer_version: 'demo', model: 'acme/uploaded' }),
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    const done = await waitFor('the uploaded training', async () => {
      const t = (await (await api(`/v1/trainings/${id}`)).json()) as { status: string; error: string | null };
      return ['succeeded', 'failed'].includes(t.status) ? t : null;
    });
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
  });

  it('takes zip names only', async () => {
    const res = await api('/v1/upload/..%2Fetc%2Fpasswd', { method: 'POST' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/filename: use a \.zip file name/);
  });
});
