/**
 * Weights versions in local mode: a training on demo-lora (the demo template, loading its
 * weights through `replicate_weights`) returns one lora.safetensors and succeeds with a version
 * recorded without a build — the model's repository never appears in the image store — whose
 * GET shows the weights' size and sha256 (those of the training's `output.weights`) and a schema
 * without the hidden input; a version built on the demo template re-templated onto demo-lora,
 * again without a build; and two new demo-lora versions run through Replicate's client on one
 * endpoint: the first prediction makes it, the other version's runs on it without waiting, and
 * each version's picture is its own weights' (same prompt and seed, different pictures).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Replicate from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceDataZip } from '#infra/local/demo';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';

let local: Local;
let receiver: Awaited<ReturnType<typeof startReceiver>>;

beforeAll(async () => {
  receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(1));
  // An OCI layout on disk: what a build pushes is a folder per model, easy to look for.
  local = await startLocal({ registry: 'none', config: { trainers: { demo: { backend: 'demo', steps_per_second: 100 } } } });
}, 120_000);
afterAll(async () => {
  await local?.stop();
  await receiver?.stop();
});

const train = (model: string, template: string, input: Record<string, unknown> = {}) =>
  local.api('POST', '/v1/trainings', {
    input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${receiver.base}/person.zip`, max_train_steps: 5, ...input },
    trainer_version: 'demo',
    template_version: template,
    model,
  });
const finished = (id: string) =>
  waitFor(`training ${id}`, async () => {
    const t = (await local.api('GET', `/v1/trainings/${id}`)).json;
    return ['succeeded', 'failed', 'canceled'].includes(t.status) ? t : null;
  });
/** Where a build would push `model` (local mode's registry: an OCI layout under images/). */
const pushed = (model: string) => existsSync(join(local.dataDir, 'images', ...model.split('/')));

describe('weights versions', () => {
  it('a training on demo-lora makes a version without a build, showing its weights and template', async () => {
    const res = await train('acme/lora', 'demo-lora', { output_format: 'lora' });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    const t = await finished(res.json.id);
    expect(t.error).toBeNull();
    expect(t.status).toBe('succeeded');
    expect(t.version).toMatch(/^[0-9a-f]{64}$/);
    expect(pushed('acme/lora')).toBe(false);

    const v = await local.api('GET', `/v1/models/acme/lora/versions/${t.version}`);
    expect(v.status).toBe(200);
    const templates = (await local.api('GET', '/v1/templates')).json.results;
    const lora = templates.find((x: { name: string }) => x.name === 'demo-lora');
    expect(v.json.image).toBe(`${lora.repository}@sha256:${lora.digests[0]}`);
    expect(v.json.template).toEqual({
      name: 'demo-lora',
      repository: lora.repository,
      digest: lora.digests[0],
      weights_input: 'replicate_weights',
    });
    expect(Object.keys(v.json.weights).sort()).toEqual(['sha256', 'size']);
    expect(v.json.openapi_schema.components.schemas.Input.properties).toHaveProperty('prompt');
    expect(v.json.openapi_schema.components.schemas.Input.properties).not.toHaveProperty('replicate_weights');

    // The weights are the trainer's output: the training's output.weights, byte for byte.
    const file = await fetch(`${local.url}/v1/trainings/${t.id}/weights`, { headers: { authorization: `Bearer ${local.token}` } });
    expect(file.status).toBe(200);
    const bytes = Buffer.from(await file.arrayBuffer());
    expect(v.json.weights).toEqual({ size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    // A safetensors file: its 8-byte little-endian header length, then a JSON header.
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
    expect(header.__metadata__).toMatchObject({ format: 'pt' });
  });

  it('re-templates a built version onto demo-lora without a build', async () => {
    const first = await finished((await train('acme/both', 'demo-template')).json.id);
    expect(first.status).toBe('succeeded');
    expect(pushed('acme/both')).toBe(true);
    const res = await local.api('POST', '/v1/models/acme/both/versions', { training_id: first.id, template_version: 'demo-lora' });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    const second = await finished(res.json.id);
    expect(second.error).toBeNull();
    expect(second.status).toBe('succeeded');
    const v = (await local.api('GET', `/v1/models/acme/both/versions/${second.version}`)).json;
    expect(v.template.name).toBe('demo-lora');
    expect(v.weights.size).toBeGreaterThan(0);
    expect(v.image).not.toContain('acme/both');
  });

  it('runs two versions of demo-lora through the official client at once after training, on one warm endpoint, each with its own weights', async () => {
    const client = new Replicate({ auth: local.token, baseUrl: `${local.url}/v1` });
    const trained = await Promise.all(
      ['acme/lora-a', 'acme/lora-b'].map(async (m, i) =>
        finished((await train(m, 'demo-lora', { output_format: 'lora', instance_prompt: `p${i}` })).json.id),
      ),
    );
    for (const t of trained) expect(t.status).toBe('succeeded');
    const [a, b] = trained.map((t) => `${t.model}:${t.version}`) as [string, string];
    const predict = async (ref: string) => {
      const created = await client.predictions.create({ version: ref.split(':')[1]!, input: { prompt: 'same', seed: 1 } });
      const done = await client.wait(created, {});
      expect(done.error).toBeNull();
      expect(done.status).toBe('succeeded');
      const res = await fetch(String((done.output as unknown[])[0]));
      return { logs: done.logs ?? '', png: Buffer.from(await res.arrayBuffer()) };
    };
    // The first prediction of the template makes its endpoint (and waits for it to serve).
    const first = await predict(a);
    expect(first.logs).toMatch(/waiting: creating the endpoint /);
    // The other version runs at once on that endpoint, already in service: nothing to wait for.
    const other = await predict(b);
    expect(other.logs).not.toMatch(/waiting:/);
    expect(other.png.equals(first.png)).toBe(false);
    // And the first version's weights come back on the same endpoint: the same picture again.
    const again = await predict(a);
    expect(again.logs).not.toMatch(/waiting:/);
    expect(again.png.equals(first.png)).toBe(true);
  });
});
