/**
 * The `cog` backend end to end through local mode, against a Cog 0.9-like trainer on loopback
 * (test/helpers/fake-cog.ts) whose `--upload-url` is local mode's upload sink, and one whose
 * `--upload-url` is the upload relay (relay/) in front of local mode.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { startUploadRelay } from '#relay/server';
import { startFakeCog, type FakeCog } from '#test-helpers/fake-cog';
import { inspectImage } from '#test-helpers/images';
import { startLocal, waitFor, type Local } from '#test-helpers/local-mode';

const INPUT = { instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', max_train_steps: 20 };
const UPLOAD_TOKEN = `upl_${randomBytes(24).toString('hex')}`;
const terminal = (s: string) => ['succeeded', 'failed', 'canceled'].includes(s);

async function outputZip(): Promise<Buffer> {
  const z = new yazl.ZipFile();
  z.addBuffer(Buffer.from(JSON.stringify({ _class_name: 'StableDiffusionPipeline' })), 'model_index.json');
  z.addBuffer(randomBytes(64 * 1024), 'unet/diffusion_pytorch_model.bin', { compress: false });
  z.addBuffer(Buffer.from('{}'), 'args.json');
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('the cog backend through local mode', () => {
  let local: Local;
  let cog: FakeCog;
  let relayed: FakeCog;
  let relay: Awaited<ReturnType<typeof startUploadRelay>>;

  beforeAll(async () => {
    const output = await outputZip();
    cog = await startFakeCog({ output: () => output });
    relayed = await startFakeCog({ output: () => output });
    local = await startLocal({
      build: 'append',
      registry: process.env.DREAMBOOTH_TEST_REGISTRY,
      config: {
        trainers: {
          mycog: { backend: 'cog', url: cog.url },
          relayed: { backend: 'cog', url: relayed.url, upload_token_secret: 'local/upload-relayed' },
        },
      },
      secrets: { 'local/upload-relayed': UPLOAD_TOKEN },
    });
    cog.options.uploadUrl = `${local.url}/v1/trainer-uploads/`;
    relay = await startUploadRelay({ api: local.url, trainer: 'relayed', token: UPLOAD_TOKEN, log: () => undefined });
    relayed.options.uploadUrl = relay.url;
  }, 90_000);
  afterAll(async () => {
    await relay?.stop();
    await local?.stop();
    await cog?.stop();
    await relayed?.stop();
  });

  const train = async (input: Record<string, unknown> = INPUT, trainer = 'mycog') => {
    const created = await local.api('POST', '/v1/trainings', { input, trainer_version: trainer, model: `acme/${trainer}` });
    expect(created.status).toBe(201);
    return created.json.id as string;
  };
  const finished = (id: string) =>
    waitFor(`training ${id} to finish`, async () => {
      const r = await local.api('GET', `/v1/trainings/${id}`);
      return terminal(r.json.status) ? r.json : null;
    });
  const puts = (c: FakeCog, id: string) => c.requests.filter((r) => r === `PUT /predictions/db-${id}`).length;

  it('trains, uploads the output to local mode and pushes an image holding the weights', async () => {
    const id = await train();
    const done = await finished(id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(typeof done.metrics.predict_time).toBe('number');
    const version = await local.api('GET', `/v1/models/acme/mycog/versions/${done.version}`);
    const image = await inspectImage(version.json.image);
    expect(image.lastLayerFiles).toContain('src/weights/model_index.json');
    expect(image.lastLayerFiles).toContain('src/weights/unet/diffusion_pytorch_model.bin');
    await cog.idle();
  });

  it('trains through the upload relay, whose s3:// location stage-weights copies', async () => {
    const id = await train(INPUT, 'relayed');
    const done = await finished(id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    const version = await local.api('GET', `/v1/models/acme/relayed/versions/${done.version}`);
    expect((await inspectImage(version.json.image)).lastLayerFiles).toContain('src/weights/model_index.json');
    await relayed.idle();
  });

  it("checks the input at submit against the Cog server's /openapi.json: 422 naming the field", async () => {
    const created = await local.api('POST', '/v1/trainings', { input: { instance_prompt: 'p', max_train_steps: 0 }, trainer_version: 'mycog', model: 'acme/mycog' });
    expect(created.status, JSON.stringify(created.json)).toBe(422);
    expect(created.json.detail).toMatch(/^input\.class_prompt: field required; input\.max_train_steps: .*1/);
    expect(created.json.detail).toContain(`${cog.url}/openapi.json`);
    expect(cog.requests).toContain('GET /openapi.json');
  });

  it('keeps the longest log when logs webhooks arrive out of order', async () => {
    cog.options.shuffleLogs = true;
    cog.options.steps = 8;
    try {
      const done = await finished(await train());
      expect(done.status).toBe('succeeded');
      expect(done.logs).toContain('step 8/8');
      expect(done.logs.trim().split('\n')).toHaveLength(8);
    } finally {
      cog.options.shuffleLogs = false;
      cog.options.steps = 5;
      await cog.idle();
    }
  });

  it('succeeds with a log larger than a DynamoDB item, whose tail is `logs` and whole text the logs route', async () => {
    // 4 lines of 180 KB (60,000 three-byte characters each): 720 KB, 240,000 characters.
    const line = (n: number, of: number) => `step ${n}/${of} ${'█'.repeat(60_000)}\n`;
    const whole = [1, 2, 3, 4].map((n) => line(n, 4)).join('');
    cog.options.steps = 4;
    cog.options.logLine = line;
    try {
      const id = await train();
      const done = await finished(id);
      expect(done.error).toBeNull();
      expect(done.status).toBe('succeeded');
      expect(Buffer.byteLength(done.logs)).toBeLessThanOrEqual(64 * 1024);
      expect(whole.endsWith(done.logs)).toBe(true);
      const log = await local.api('GET', `/v1/trainings/${id}/logs`);
      expect(log.status).toBe(200);
      expect(log.json).toBe(whole);
    } finally {
      cog.options.steps = 5;
      cog.options.logLine = undefined;
      await cog.idle();
    }
  });

  it('fails with the --upload-url error when the trainer succeeds without an output', async () => {
    cog.options.failUpload = true;
    try {
      const done = await finished(await train());
      expect(done.status).toBe('failed');
      expect(done.error).toContain('--upload-url');
    } finally {
      cog.options.failUpload = false;
      await cog.idle();
    }
  });

  it('refuses at submit what the trainer would refuse, naming each field', async () => {
    // Once failed at the trainer's start; now the Cog server's own schema refuses it at create
    // (the trainer's run-time refusal is covered in test/lambdas/shared/trainers/cog.test.ts).
    const { class_prompt: _omitted, ...rest } = INPUT;
    const created = await local.api('POST', '/v1/trainings', { input: { ...rest, max_train_steps: 'many' }, trainer_version: 'mycog', model: 'acme/mycog' });
    expect(created.status).toBe(422);
    expect(created.json.detail).toMatch(/input\.class_prompt: field required; input\.max_train_steps: value type "string" is invalid/);
  });

  it('forwards a cancel to the trainer', async () => {
    cog.options.steps = 10_000;
    cog.options.stepMs = 50;
    try {
      const id = await train();
      await waitFor('processing', async () => (await local.api('GET', `/v1/trainings/${id}`)).json.status === 'processing');
      const canceled = await local.api('POST', `/v1/trainings/${id}/cancel`);
      expect(canceled.status).toBe(200);
      expect((await finished(id)).status).toBe('canceled');
      await waitFor('the cancel at the trainer', async () => cog.requests.includes(`POST /predictions/db-${id}/cancel`), 10_000);
      await cog.idle();
    } finally {
      cog.options.steps = 5;
      cog.options.stepMs = 20;
    }
  });

  // Last: the state machine retries a busy trainer after about a second (FULL jitter).
  it('retries the start while the trainer is busy with another prediction', async () => {
    cog.options.busyFirst = 1;
    const id = await train();
    const done = await finished(id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(puts(cog, id)).toBeGreaterThanOrEqual(2);
    expect(cog.options.busyFirst).toBe(0);
  }, 75_000);
});
