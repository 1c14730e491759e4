/**
 * Templates and model versions through local mode: a bare digest found in the catalog's
 * registry (or, on a bare machine, its OCI layout), a refused non-template image, versions
 * listed newest first, and a new version of a trained model on another template without
 * retraining.
 */
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendLayer } from '#shared/oci/append';
import { tarEntries } from '#shared/oci/tar';
import { sha256, type ImageStore } from '#shared/oci/types';
import { instanceDataZip } from '#infra/local/demo';
import { requireLocalModeRegistry } from '#test-helpers/capabilities';
import { inspectImage, openRepository } from '#test-helpers/images';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';

let local: Local;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
/** The vanilla template's repository as the catalog names it, and its store. */
let repository: string;
let store: ImageStore;
let repo: string;
/** A second, unpinned version of the vanilla template. */
let v2: string;

beforeAll(async () => {
  receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(1));
  local = await startLocal({ registry: process.env.DREAMBOOTH_TEST_REGISTRY, config: { trainers: { demo: { backend: 'demo', steps_per_second: 100 } } } });
  const vanilla = (await local.api('GET', '/v1/templates')).json.results.find((t: { name: string }) => t.name === 'vanilla-template');
  repository = vanilla.repository;
  ({ store, repo } = openRepository(repository));
  const extra = () => tarEntries([{ path: 'NOTICE', size: 3, stream: () => Readable.from([Buffer.from('v2\n')]) }], 'src/');
  v2 = (await appendLayer({
    source: store, sourceRepo: repo, sourceRef: `sha256:${vanilla.digests[0]}`,
    target: store, targetRepo: repo, tag: 'v2', layer: extra, labels: { 'org.example.flavour': 'v2' },
  })).digest;
}, 120_000);
afterAll(async () => {
  await local?.stop();
  await receiver?.stop();
});

const train = (over: Record<string, unknown>) =>
  local.api('POST', '/v1/trainings', {
    input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${receiver.base}/person.zip`, max_train_steps: 5 },
    trainer_version: 'demo',
    model: 'acme/templated',
    ...over,
  });
const finished = (id: string) =>
  waitFor(`training ${id}`, async () => {
    const t = (await local.api('GET', `/v1/trainings/${id}`)).json;
    return ['succeeded', 'failed', 'canceled'].includes(t.status) ? t : null;
  });

/** An image with no Cog labels, put in `target` (default: beside the vanilla template). */
async function plainImage(target = { store, repo }): Promise<string> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Labels: {} }, rootfs: { type: 'layers', diff_ids: [] } }));
  const blob = await target.store.uploadBlob(target.repo, config, sha256(config));
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: blob.digest, size: blob.size }, layers: [] }),
  );
  return (await target.store.putManifest(target.repo, 'plain', manifest, 'application/vnd.oci.image.manifest.v1+json')).slice(7);
}

// A full `host/repo@sha256:…` reference names a registry: the OCI layout has no such name.
const fullReference = requireLocalModeRegistry('a template named by its full registry reference');

describe('template_version', () => {
  it('resolves a bare digest that is not pinned by asking the catalog\'s registries', async () => {
    const res = await train({ template_version: v2 });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    const t = await finished(res.json.id);
    expect(t.status).toBe('succeeded');
    const version = (await local.api('GET', `/v1/models/acme/templated/versions/${t.version}`)).json;
    // An image version: no weights of its own to show.
    expect(Object.keys(version).sort()).toEqual(['created_at', 'id', 'image', 'model', 'notes', 'template', 'training_id']);
    const listed = (await local.api('GET', '/v1/models/acme/templated/versions')).json.results.find((v: { id: string }) => v.id === t.version);
    expect(listed.template).toEqual({ name: 'vanilla-template', repository, digest: v2, weights: 'diffusers' });
    expect(version.template).toEqual(listed.template);
    expect((await inspectImage(version.image)).labels['org.example.flavour']).toBe('v2');
  });

  it('refuses an unknown digest, naming the repositories it tried', async () => {
    const res = await train({ template_version: 'e'.repeat(64) });
    expect(res.status).toBe(400);
    expect(res.json.detail).toMatch(/no manifest sha256:e{64} in any catalog template \(tried .*templates\/vanilla-template/);
  });

  it('refuses an image that is not a Cog template', async () => {
    const digest = await plainImage();
    const res = await train({ template_version: `vanilla-template@sha256:${digest}` });
    expect(res.status).toBe(400);
    expect(res.json.detail).toMatch(/is not a Cog template: it has no run\.cog\.\* or org\.cogmodel\.\* labels/);
  });

  it.skipIf(fullReference.skip)('refuses a non-template image named by its full reference in another repository', async () => {
    const host = repository.split('/')[0];
    const digest = await plainImage(openRepository(`${host}/acme-images/plain`));
    const res = await train({ template_version: `${host}/acme-images/plain@sha256:${digest}` });
    expect(res.status).toBe(400);
    expect(res.json.detail).toMatch(/is not a Cog template: it has no run\.cog\.\* or org\.cogmodel\.\* labels/);
  });
});

describe('model versions', () => {
  it('builds a new version of a trained model on another template without retraining', async () => {
    const first = await finished((await train({ notes: 'on vanilla', model: 'acme/retemplated' })).json.id);
    expect(first.status).toBe('succeeded');
    const res = await local.api('POST', '/v1/models/acme/retemplated/versions', {
      training_id: first.id,
      template_version: `vanilla-template@sha256:${v2}`,
      notes: 'same weights, template v2',
      webhook: `${receiver.base}/retemplated`,
    });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    expect(res.json.status).toBe('pushing');
    const second = await finished(res.json.id);
    expect(second.error).toBeNull();
    expect(second.status).toBe('succeeded');
    expect(second.version).not.toBe(first.version);
    // No second trainer run: the same logs, the same staged weights.
    expect(second.logs).toBe(first.logs);
    const a = await inspectImage((await local.api('GET', `/v1/models/acme/retemplated/versions/${first.version}`)).json.image);
    const b = await inspectImage((await local.api('GET', `/v1/models/acme/retemplated/versions/${second.version}`)).json.image);
    expect(b.lastLayerFiles).toEqual(a.lastLayerFiles);
    expect(b.labels['org.example.flavour']).toBe('v2');
    expect(b.labels['org.opencontainers.image.description']).toBe('same weights, template v2');
    const hook = await waitFor('webhook', async () => receiver.hooks.find((h) => h.json?.id === second.id), 30_000);
    expect(hook.json.status).toBe('succeeded');

    const list = (await local.api('GET', '/v1/models/acme/retemplated/versions')).json;
    expect(list.results.map((v: { id: string }) => v.id)).toEqual([second.version, first.version]);
    expect(list.results[0]).toMatchObject({ training_id: second.id, template: { digest: v2 } });
    const model = (await local.api('GET', '/v1/models/acme/retemplated')).json;
    expect(model.latest_version.id).toBe(second.version);
  });

  it('refuses to re-template a training that did not succeed, or of another model', async () => {
    // Valid at submit, failed by the trainer (its instance_data is no zip).
    const bad = await finished((await train({ input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${receiver.base}/not-a-zip` }, model: 'acme/never' })).json.id);
    expect(bad.status).toBe('failed');
    const res = await local.api('POST', '/v1/models/acme/never/versions', { training_id: bad.id, template_version: `vanilla-template@sha256:${v2}` });
    expect(res.status).toBe(409);
    const other = await local.api('POST', '/v1/models/acme/elsewhere/versions', { training_id: bad.id, template_version: 'vanilla-template' });
    expect(other.status).toBe(400);
    expect((await local.api('GET', '/v1/models/acme/nothing-here')).status).toBe(404);
  });
});
