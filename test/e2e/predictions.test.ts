/**
 * Replicate's official JS client runs a version trained here, in local mode, unchanged: the demo
 * trainer trains, the build pushes the version and its SageMaker variant, and the client's
 * `run` sends a prediction that the prediction state machine serves on the version's endpoint
 * (local mode's stand-in for SageMaker asynchronous inference, the demo template in-process).
 * Also what a prediction refuses, what another tenant sees, listing, cancel and the webhook.
 */
import { randomBytes } from 'node:crypto';
import Replicate, { validateWebhook } from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '#shared/ids';
import { instanceDataZip } from '#infra/local/demo';
import { LOCAL_SECRET_IDS } from '#infra/local/names';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const TENANTS = { acme: `r8_${randomBytes(20).toString('hex')}`, other: `r8_${randomBytes(20).toString('hex')}` };

let local: Local;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
const client = (owner: keyof typeof TENANTS) => new Replicate({ auth: TENANTS[owner], baseUrl: `${local.url}/v1` });
/** The `owner/name:version` of a version trained for acme. */
let trained: string;
let versionId: string;

async function train(model: string): Promise<{ version: string }> {
  const created = await client('acme').trainings.create('dreambooth', 'demo-trainer', 'demo', {
    destination: model as `${string}/${string}`,
    input: { instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', instance_data: `${receiver.base}/person.zip`, max_train_steps: 20 },
  });
  const done = await waitFor(`training ${created.id}`, async () => {
    const t = await client('acme').trainings.get(created.id);
    return ['succeeded', 'failed', 'canceled'].includes(t.status) ? t : null;
  });
  expect(done.error).toBeNull();
  return { version: done.output!.version as string };
}

async function download(url: string): Promise<Buffer> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

beforeAll(async () => {
  receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(2));
  local = await startLocal({
    registry: process.env.DREAMBOOTH_TEST_REGISTRY,
    config: { trainers: { demo: { backend: 'demo', steps_per_second: 50 } }, limits: { page_size: 2 } },
    secrets: { [LOCAL_SECRET_IDS.apiTokens]: JSON.stringify({ tokens: Object.entries(TENANTS).map(([owner, token]) => ({ name: owner, sha256: sha256Hex(token), owners: [owner] })) }) },
  });
  trained = (await train('acme/cjw')).version;
  versionId = trained.split(':')[1]!;
});
afterAll(async () => {
  await local?.stop();
  await receiver?.stop();
});

describe('predictions through the official replicate client', () => {
  it('runs the trained version and its picture downloads', async () => {
    const output = (await client('acme').run(trained as `${string}/${string}:${string}`, { input: { prompt: 'a photo of cjw person on the moon', seed: 7 } })) as unknown[];
    expect(Array.isArray(output)).toBe(true);
    expect(output).toHaveLength(1);
    // Local mode's URLs are http, which the client leaves as strings (FileOutput is for https and data URIs).
    const png = await download(String(output[0]));
    expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE);
  });

  it("follows a prediction from create to succeeded, with Replicate's object", async () => {
    const created = await client('acme').predictions.create({ version: versionId, input: { prompt: 'cjw on a bicycle', num_outputs: 2 } });
    expect(created).toMatchObject({ model: 'acme/cjw', version: versionId, status: 'starting' });
    expect(created.urls.get).toBe(`${local.url}/v1/predictions/${created.id}`);
    const done = await client('acme').wait(created, {});
    expect(done.status).toBe('succeeded');
    expect(done.error).toBeNull();
    expect(done.output).toHaveLength(2);
    expect(done.metrics?.predict_time).toBeGreaterThan(0);
    expect(Date.parse(done.created_at)).toBeLessThanOrEqual(Date.parse(done.completed_at!));
    const [a, b] = await Promise.all((done.output as string[]).map(download));
    expect(a!.equals(b!)).toBe(false);
  });

  it('runs the latest version of a model by its name', async () => {
    const p = await client('acme').predictions.create({ model: 'acme/cjw', input: { prompt: 'cjw in the rain' }, wait: true });
    const done = p.status === 'succeeded' ? p : await client('acme').wait(p, {});
    expect(done).toMatchObject({ status: 'succeeded', version: versionId });
  });

  it('gives the same picture for the same prompt and seed, and another for another version', async () => {
    const other = (await train('acme/cjw-again')).version;
    const run = async (ref: string) => download(String(((await client('acme').run(ref as `${string}/${string}:${string}`, { input: { prompt: 'same', seed: 1 } })) as unknown[])[0]));
    const [first, again, otherVersion] = [await run(trained), await run(trained), await run(other)];
    expect(first.equals(again)).toBe(true);
    expect(first.equals(otherVersion)).toBe(false);
  });

  it('refuses bad input at submit with 422 naming the field, and unknown or foreign versions with 404', async () => {
    const bad = await fetch(`${local.url}/v1/predictions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TENANTS.acme}`, 'content-type': 'application/json' },
      body: JSON.stringify({ version: versionId, input: { prompt: 'x', num_outputs: 99 } }),
    });
    expect(bad.status).toBe(422);
    expect(JSON.stringify(await bad.json())).toContain('num_outputs');
    const unknown = await client('acme').predictions.create({ version: 'f'.repeat(64), input: { prompt: 'x' } }).then(() => null, (e: Error & { response?: Response }) => e);
    expect(unknown?.response?.status).toBe(404);
    const foreign = await client('other').predictions.create({ version: versionId, input: { prompt: 'x' } }).then(() => null, (e: Error & { response?: Response }) => e);
    expect(foreign?.response?.status).toBe(404);
  });

  it("lists one owner's predictions newest first, and hides them from another", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await client('acme').predictions.create({ version: versionId, input: { prompt: `list ${i}` } })).id);
    const first = await client('acme').predictions.list();
    expect(first.results.map((p) => p.id)).toEqual([ids[2], ids[1]]);
    const seen: string[] = [];
    for await (const page of client('acme').paginate(client('acme').predictions.list)) seen.push(...page.map((p) => p.id));
    expect(seen.slice(0, 3)).toEqual([ids[2], ids[1], ids[0]]);
    const theirs = await client('other').predictions.list();
    expect(theirs.results.filter((p) => ids.includes(p.id))).toEqual([]);
    const get = await client('other').predictions.get(ids[0]!).then(() => null, (e: Error & { response?: Response }) => e);
    expect(get?.response?.status).toBe(404);
  });

  it('sends the completed webhook, signed with the owner’s key', async () => {
    const p = await client('acme').predictions.create({ version: versionId, input: { prompt: 'hooked' }, webhook: `${receiver.base}/prediction-hook`, webhook_events_filter: ['completed'] });
    const hook = await waitFor('the completed webhook', async () => receiver.hooks.find((h) => h.json?.id === p.id && h.json.status === 'succeeded'), 60_000);
    const key = (await client('acme').webhooks.default.secret.get()).key;
    const request = new Request(`${receiver.base}${hook.url}`, { method: 'POST', headers: hook.headers as Record<string, string>, body: hook.body });
    expect(await validateWebhook(request, key)).toBe(true);
    expect(hook.json.output).toHaveLength(1);
  });

  it('queues a burst on the endpoint without losing one', async () => {
    const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => client('acme').predictions.create({ version: versionId, input: { prompt: `burst ${i}`, num_inference_steps: 5 } })));
    const done = await Promise.all(burst.map((p) => client('acme').wait(p, {})));
    expect(done.map((p) => p.status)).toEqual(burst.map(() => 'succeeded'));
    // Each its own picture: no output crossed to another prediction.
    const pictures = await Promise.all(done.map((p) => download(String((p.output as string[])[0]))));
    expect(new Set(pictures.map((b) => b.toString('base64'))).size).toBe(20);
  });

  it('cancels a prediction that has not finished', async () => {
    // 500 steps: the model takes 5 s, so the cancel below lands before it could finish.
    const p = await client('acme').predictions.create({ version: versionId, input: { prompt: 'to cancel', num_inference_steps: 500 } });
    const canceled = await client('acme').predictions.cancel(p.id);
    expect(canceled.status).toBe('canceled');
    const after = await client('acme').predictions.get(p.id);
    expect(after).toMatchObject({ status: 'canceled', output: null });
    expect(after.completed_at).not.toBeNull();
  });
});
