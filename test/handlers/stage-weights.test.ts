/**
 * stage-weights: a real file server plays the trainer's upload store, s3rver receives the
 * archive, dynalite holds the training.
 */
import { randomBytes } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { stageWeights } from '../../lambdas/stage-weights/core.ts';
import { newTraining, startFixture, startServer, TEMPLATE_DIGEST, type Fixture, type TestServer } from '../helpers/aws-local.ts';

const REGISTRY_HOST = '000000000000.dkr.ecr.us-east-1.amazonaws.com';
const env = { registryHost: REGISTRY_HOST };

async function zip(files: Record<string, string | Buffer>): Promise<Buffer> {
  const z = new yazl.ZipFile();
  for (const [name, data] of Object.entries(files)) z.addBuffer(Buffer.from(data), name, { compress: false });
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** yazl refuses `..`; the entry is written under a same-length name and patched in both headers. */
async function zipWithDotDot(): Promise<Buffer> {
  const raw = await zip({ 'model_index.json': '{}', 'qq/escape.txt': 'outside' });
  return Buffer.from(raw.toString('latin1').replaceAll('qq/escape.txt', '../escape.txt'), 'latin1');
}

let fx: Fixture;
let files: TestServer;
const archives: Record<string, Buffer> = {};

beforeAll(async () => {
  archives['/good.zip'] = await zip({
    'model_index.json': JSON.stringify({ _class_name: 'StableDiffusionPipeline' }),
    'unet/diffusion_pytorch_model.bin': randomBytes(256 * 1024),
    'args.json': '{}',
  });
  archives['/no-index.zip'] = await zip({ 'unet/config.json': '{}', 'args.json': '{}' });
  archives['/dotdot.zip'] = await zipWithDotDot();
  files = await startServer((req, res) => {
    const path = req.url.split('?')[0]!;
    const body = archives[path.replace(/^\/truncated/, '')];
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    if (path.startsWith('/truncated')) {
      // Promise more than is sent, then drop the connection.
      res.writeHead(200, { 'content-type': 'application/zip', 'content-length': body.length });
      res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
      return;
    }
    res.writeHead(200, { 'content-type': 'application/zip', 'content-length': body.length }).end(body);
  });
  fx = await startFixture();
});
afterAll(async () => {
  await files?.close();
  await fx?.stop();
});

const hits = (path: string) => files.requests.filter((r) => r.url.split('?')[0] === path).length;
const errorOf = (p: Promise<unknown>) => p.then(() => new Error('no error'), (e: Error) => e);
const staged = (id: string) =>
  fx.deps.s3.send(new HeadObjectCommand({ Bucket: fx.deps.bucket, Key: `staged/${id}/output.zip` })).then(
    (h) => h.ContentLength,
    () => null,
  );
const processing = () => newTraining(fx.deps, { status: 'processing', run: { id: 'db-run', started: true, terminal: 'succeeded', output: null } });

describe('a good archive', () => {
  it('is streamed into S3 under staged/<id>/output.zip and the build env is right', async () => {
    const t = await processing();
    const out = await stageWeights(fx.deps, env, t.id, `${files.url}/good.zip?X-Amz-Signature=abc`);

    const key = `staged/${t.id}/output.zip`;
    expect(out).toMatchObject({ bucket: fx.deps.bucket, key, size: archives['/good.zip']!.length, entries: 3 });
    expect(out.build_env).toEqual({
      TRAINING_ID: t.id,
      WEIGHTS_S3_URI: `s3://${fx.deps.bucket}/${key}`,
      TEMPLATE_IMAGE: `127.0.0.1:5000/templates/vanilla@sha256:${TEMPLATE_DIGEST}`,
      IMAGE_REPOSITORY: `${REGISTRY_HOST}/dreambooth/alice/portrait`,
      IMAGE_TAG: t.id,
      NOTES: 'first try',
    });
    const object = await fx.deps.s3.send(new GetObjectCommand({ Bucket: fx.deps.bucket, Key: key }));
    expect(Buffer.from(await object.Body!.transformToByteArray()).equals(archives['/good.zip']!)).toBe(true);
    expect(await fx.deps.store.getTraining(t.id)).toMatchObject({
      status: 'pushing',
      staged: { bucket: fx.deps.bucket, key, size: archives['/good.zip']!.length },
    });
  });

  it('a second call checks the staged archive again without downloading it', async () => {
    const t = await processing();
    const url = `${files.url}/good.zip?attempt=${t.id}`;
    const first = await stageWeights(fx.deps, env, t.id, url);
    const second = await stageWeights(fx.deps, env, t.id, url);
    expect(second).toEqual(first);
    expect(files.requests.filter((r) => r.url === `/good.zip?attempt=${t.id}`)).toHaveLength(1);
  });

  it.each([
    ['ecr', { type: 'ecr', repository_prefix: 'models' }, `${REGISTRY_HOST}/models/alice/portrait`],
    ['oci', { type: 'oci', host: 'registry.example.com/acme', credentials_secret: 'reg' }, 'registry.example.com/acme/alice/portrait'],
    ['layout', { type: 'layout', dir: '/var/lib/models' }, 'oci:/var/lib/models/alice/portrait'],
  ])('IMAGE_REPOSITORY for a %s registry', async (_type, registry, expected) => {
    const t = await processing();
    const out = await stageWeights(fx.withConfig({ registry }), env, t.id, `${files.url}/good.zip`);
    expect(out.build_env.IMAGE_REPOSITORY).toBe(expected);
  });
});

describe('a bad download', () => {
  it('404 is TrainerFailed and the message has no query string', async () => {
    const t = await processing();
    const err = await errorOf(stageWeights(fx.deps, env, t.id, `${files.url}/missing.zip?X-Amz-Signature=topsecret&X-Amz-Credential=AKIA`));
    expect(err.name).toBe('TrainerFailed');
    expect(err.message).toContain('/missing.zip');
    expect(err.message).toContain('404');
    expect(err.message).not.toMatch(/topsecret|AKIA|\?/);
    expect(await staged(t.id)).toBeNull();
  });

  it('a body cut short fails, stages nothing, and the retry downloads again', async () => {
    const t = await processing();
    const url = `${files.url}/truncated/good.zip`;
    const err = await errorOf(stageWeights(fx.deps, env, t.id, url));
    expect(err.name).toBe('TransientError');
    expect(await staged(t.id)).toBeNull();

    await errorOf(stageWeights(fx.deps, env, t.id, url));
    expect(hits('/truncated/good.zip')).toBe(2);
  });
});

describe('a bad archive', () => {
  it('without model_index.json is BadArchive', async () => {
    const t = await processing();
    const err = await errorOf(stageWeights(fx.deps, env, t.id, `${files.url}/no-index.zip`));
    expect(err.name).toBe('BadArchive');
    expect(err.message).toContain('model_index.json');
  });

  it('with a ".." entry is BadArchive', async () => {
    const t = await processing();
    const err = await errorOf(stageWeights(fx.deps, env, t.id, `${files.url}/dotdot.zip`));
    expect(err.name).toBe('BadArchive');
    expect(err.message).toContain('../escape.txt');
  });

  it('larger than limits.archive_max_bytes is BadArchive before it is staged', async () => {
    const t = await processing();
    const err = await errorOf(stageWeights(fx.withConfig({ limits: { archive_max_bytes: 1024 } }), env, t.id, `${files.url}/good.zip`));
    expect(err.name).toBe('BadArchive');
    expect(await staged(t.id)).toBeNull();
  });
});

describe('a canceled training', () => {
  it('stages nothing', async () => {
    const t = await newTraining(fx.deps, { status: 'canceled', cancel_requested: true });
    const before = files.requests.length;
    expect((await errorOf(stageWeights(fx.deps, env, t.id, `${files.url}/good.zip`))).name).toBe('TrainingCanceled');
    expect(files.requests.length).toBe(before);
  });
});
