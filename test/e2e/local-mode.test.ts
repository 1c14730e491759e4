/**
 * End to end through local mode (`npm start`) with real HTTP receivers on loopback, on both
 * build paths: the buildspec run with docker (needs a docker engine and a registry: required in
 * CI) and the daemonless append build, into a registry or, on a bare machine, the OCI layout.
 */
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendLayer } from '#shared/oci/append';
import { tarEntries } from '#shared/oci/tar';
import { verify } from '#shared/webhook-signing';
import { instanceDataZip } from '#infra/local/demo';
import { localModeImages, requireDocker, requireLocalModeRegistry } from '#test-helpers/capabilities';
import { deleteBlob, inspectImage, openImage, openRepository } from '#test-helpers/images';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';

// The path local mode takes on this machine: a registry when one is there, else the OCI layout.
const images = localModeImages();
// The docker build pushes, so it needs a registry as well as the engine.
const dockerPath = 'the docker build path of local mode';
const docker = !requireDocker(dockerPath).skip && !requireLocalModeRegistry(dockerPath).skip;
const strategies = (docker ? ['append', 'docker'] : ['append']) as ('append' | 'docker')[];

const SEED_INPUT = { instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', max_train_steps: 20 };
/** As long as notes may be (limits.notes_max_chars): more than a CodeBuild variable holds. */
const NOTES = `first "version" with $pecial\ncharacters ${'é'.repeat(10_000)}`.slice(0, 10_000);
const terminal = (s: string) => ['succeeded', 'failed', 'canceled'].includes(s);

describe.each(strategies)('local mode, %s build', (build) => {
  let local: Local;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let down = false;

  beforeAll(async () => {
    receiver = await startReceiver(() => (down ? 503 : 200));
    receiver.serve('/person.zip', await instanceDataZip(2));
    receiver.serve('/no-images.zip', await emptyZip());
    local = await startLocal({
      build,
      registry: process.env.DREAMBOOTH_TEST_REGISTRY,
      config: {
        trainers: { demo: { backend: 'demo', steps_per_second: 50 } },
        webhooks: { retry_interval_seconds: 1, retry_backoff_rate: 1, retry_max_attempts: 6, retry_max_delay_seconds: 2 },
      },
    });
  });
  afterAll(async () => {
    await local?.stop();
    await receiver?.stop();
  });

  const finished = (id: string) =>
    waitFor(`training ${id} to finish`, async () => {
      const r = await local.api('GET', `/v1/trainings/${id}`);
      return terminal(r.json.status) ? r.json : null;
    });
  const hookFor = (id: string, status?: string) =>
    waitFor(`webhook for ${id}`, async () => receiver.hooks.find((h) => h.json?.id === id && (!status || h.json.status === status)), 60_000);

  it('trains the seed payload with the demo trainer, pushes an image with the weights and 10,000 characters of notes, and sends a signed webhook', async () => {
    const created = await local.api('POST', '/v1/trainings', {
      input: { ...SEED_INPUT, instance_data: `${receiver.base}/person.zip` },
      trainer_version: 'demo',
      model: 'acme/cjw',
      notes: NOTES,
      webhook_completed: `${receiver.base}/hook?customer=42`,
    });
    expect(created.status).toBe(201);
    expect(created.json.status).toBe('starting');
    const done = await finished(created.json.id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.version).toMatch(/^[0-9a-f]{64}$/);

    const hook = await hookFor(created.json.id);
    expect(hook.url).toBe('/hook?customer=42');
    // Local mode's token acts for any owner: it names the training's.
    const { json: secret } = await local.api('GET', '/v1/webhooks/default/secret?owner=acme');
    expect(secret.key).toMatch(/^whsec_/);
    expect(verify(secret.key, hook.headers as Record<string, string>, hook.body)).toBe(true);
    expect(verify('whsec_' + Buffer.from('another secret').toString('base64'), hook.headers as Record<string, string>, hook.body)).toBe(false);
    expect(Object.keys(hook.json).sort()).toEqual(
      ['created_at', 'error', 'id', 'input', 'logs', 'metrics', 'model', 'notes', 'status', 'version', 'webhook_completed'].sort(),
    );
    expect(hook.json).toMatchObject({ status: 'succeeded', model: 'acme/cjw', version: done.version, error: null });
    expect(typeof hook.json.metrics.predict_time).toBe('number');
    expect(hook.json.logs).toContain('Steps: 20/20');

    const version = await local.api('GET', `/v1/models/acme/cjw/versions/${done.version}`);
    expect(version.status).toBe(200);
    expect(version.json).toMatchObject({ id: done.version, model: 'acme/cjw', training_id: created.json.id, notes: done.notes });
    expect(version.json.image).toMatch(
      images === 'registry'
        ? new RegExp(`^127\\.0\\.0\\.1:\\d+/acme/cjw@sha256:${done.version}$`)
        : new RegExp(`^oci:${escapeRegExp(local.dataDir)}/images/acme/cjw:[a-z0-9]+$`),
    );
    // The version id is the digest of the manifest the reference names, in either store.
    const pushed = openImage(version.json.image);
    expect((await pushed.store.getManifest(pushed.repo, pushed.ref)).digest).toBe(`sha256:${done.version}`);
    const image = await inspectImage(version.json.image);
    expect(image.lastLayerFiles).toContain('src/weights/model_index.json');
    expect(image.lastLayerFiles.some((f) => f.startsWith('src/weights/unet/'))).toBe(true);
    expect(done.notes).toBe(NOTES);
    expect(image.labels['org.opencontainers.image.description']).toBe(NOTES);
    expect(image.workdir).toBe('/src');
  });

  it('fails the training and sends a failed webhook when the trainer fails', async () => {
    const created = await local.api('POST', '/v1/trainings', {
      input: { ...SEED_INPUT, instance_data: `${receiver.base}/no-images.zip` },
      trainer_version: 'demo',
      model: 'acme/bad-data',
      webhook_completed: `${receiver.base}/hook`,
    });
    expect(created.status).toBe(201);
    const done = await finished(created.json.id);
    expect(done.status).toBe('failed');
    expect(done.error).toContain('instance_data holds no images');
    const hook = await hookFor(created.json.id);
    expect(hook.json).toMatchObject({ status: 'failed', version: null });
    expect(hook.json.error).toContain('instance_data holds no images');
  });

  it('fails with the build log tail in the error when the build fails', async () => {
    const broken = await brokenTemplate(local);
    const created = await local.api('POST', '/v1/trainings', {
      input: { ...SEED_INPUT, instance_data: `${receiver.base}/person.zip` },
      trainer_version: 'demo',
      template_version: `vanilla-template@sha256:${broken}`,
      model: 'acme/no-template',
      webhook_completed: `${receiver.base}/hook`,
    });
    expect(created.status).toBe(201);
    const done = await finished(created.json.id);
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/image build failed in phase BUILD/);
    // The tail names what went wrong: a layer of the template is gone from its store.
    expect(done.error).toMatch(images === 'registry' ? /unknown blob|blob unknown|BLOB_UNKNOWN|404/i : /blob sha256:[0-9a-f]{64} is not in \//);
    expect((await hookFor(created.json.id)).json.status).toBe('failed');
  });

  it('delivers the webhook on a retry when the receiver was down', async () => {
    down = true;
    const before = receiver.attempts();
    const created = await local.api('POST', '/v1/trainings', {
      input: { ...SEED_INPUT, instance_data: `${receiver.base}/person.zip` },
      trainer_version: 'demo',
      model: 'acme/retry',
      webhook_completed: `${receiver.base}/hook?retry=1`,
    });
    await finished(created.json.id);
    await waitFor('two refused deliveries', async () => receiver.attempts() - before >= 2);
    down = false;
    const hook = await hookFor(created.json.id);
    expect(hook.json.status).toBe('succeeded');
    const after = await local.api('GET', `/v1/trainings/${created.json.id}`);
    expect(after.json.status).toBe('succeeded');
  });

  it('cancels a training while the trainer runs', async () => {
    const created = await local.api('POST', '/v1/trainings', {
      input: { ...SEED_INPUT, max_train_steps: 100_000, instance_data: `${receiver.base}/person.zip` },
      trainer_version: 'demo',
      model: 'acme/cancel',
      webhook_completed: `${receiver.base}/hook`,
    });
    await waitFor('processing', async () => (await local.api('GET', `/v1/trainings/${created.json.id}`)).json.status === 'processing');
    const canceled = await local.api('POST', `/v1/trainings/${created.json.id}/cancel`);
    expect(canceled.status).toBe(200);
    expect(canceled.json.status).toBe('canceled');
    const done = await finished(created.json.id);
    expect(done.status).toBe('canceled');
    expect((await hookFor(created.json.id, 'canceled')).json.status).toBe('canceled');
    // The trainer is free again: a new training starts right away.
    const health = await waitFor('demo trainer idle', async () => {
      const r = await local.api('GET', '/v1/trainers');
      return r.status === 200 ? r : null;
    });
    expect(health.json.results.map((t: { key: string }) => t.key)).toContain('demo');
  });
});

/**
 * A template whose manifest and config are fine (so it passes the submit checks) but one of
 * whose layers was deleted from its store: pulling or copying it fails inside the build.
 */
async function brokenTemplate(local: Local): Promise<string> {
  const vanilla = (await local.api('GET', '/v1/templates')).json.results.find((t: { name: string }) => t.name === 'vanilla-template');
  const { store, repo } = openRepository(vanilla.repository);
  const layer = () => tarEntries([{ path: 'BROKEN', size: 2, stream: () => Readable.from([Buffer.from('x\n')]) }], 'src/');
  const { digest } = await appendLayer({
    source: store, sourceRepo: repo, sourceRef: `sha256:${vanilla.digests[0]}`,
    target: store, targetRepo: repo, tag: 'broken', layer, labels: {},
  });
  const { manifest } = await store.getManifest(repo, `sha256:${digest}`);
  await deleteBlob(vanilla.repository, manifest.layers.at(-1)!.digest);
  return digest;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function emptyZip(): Promise<Buffer> {
  const yazl = (await import('yazl')).default;
  const zip = new yazl.ZipFile();
  zip.addBuffer(Buffer.from('not an image'), 'readme.txt');
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
