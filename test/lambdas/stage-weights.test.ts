/**
 * stage-weights: a real file server plays the trainer's upload store, s3rver receives the
 * archive, dynalite holds the training.
 */
import { randomBytes } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { stageWeights } from '#lambdas/stage-weights/core';
import { tarball } from '#test-helpers/tars';
import { newTraining, startFixture, startServer, TEMPLATE_DIGEST, type Fixture, type TestServer } from '#test-helpers/aws-local';

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
  const pipeline = [
    { name: 'model_index.json', data: JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'] }) },
    { name: 'unet/', type: 'directory' as const },
    { name: 'unet/diffusion_pytorch_model.bin', data: randomBytes(64 * 1024) },
  ];
  archives['/pipeline.tar'] = await tarball(pipeline);
  archives['/trained_model.tar'] = await tarball([{ name: 'lora.safetensors', data: randomBytes(32 * 1024) }]);
  archives['/trained_model.tar.gz'] = await tarball([{ name: 'output/', type: 'directory' }, { name: 'output/lora.safetensors', data: 'x'.repeat(4096) }], { gzip: true });
  archives['/lora.safetensors'] = randomBytes(16 * 1024);
  archives['/lora-only.zip'] = await zip({ 'lora.safetensors': 'weights' });
  archives['/symlink.tar'] = await tarball([{ name: 'lora.safetensors', type: 'symlink', linkname: '/etc/passwd' }]);
  archives['/hardlink.tar'] = await tarball([{ name: 'a', data: 'a' }, { name: 'b', type: 'link', linkname: 'a' }]);
  archives['/dotslash.tar'] = await tarball([{ name: './lora.safetensors', data: 'w' }]);
  archives['/dotdot.tar'] = await tarball([{ name: '../escape.txt', data: 'w' }]);
  archives['/bomb.tar.gz'] = await tarball([{ name: 'zeros.bin', data: Buffer.alloc(8 * 1024 * 1024) }], { gzip: true });
  archives['/fake.tar'] = Buffer.from('not a tar at all');
  archives['/cut.tar.gz'] = (await tarball([{ name: 'lora.safetensors', data: randomBytes(64 * 1024) }], { gzip: true })).subarray(0, 20_000);
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
  fx = await startFixture({ as: 'stage-weights' });
});
afterAll(async () => {
  await files?.close();
  await fx?.stop();
});

const hits = (path: string) => files.requests.filter((r) => r.url.split('?')[0] === path).length;
const errorOf = (p: Promise<unknown>) => p.then(() => new Error('no error'), (e: Error) => e);
/** The staged object's size: it keeps the output URL's file name. */
const staged = (id: string, name = 'good.zip') =>
  fx.deps.s3.send(new HeadObjectCommand({ Bucket: fx.deps.bucket, Key: `staged/${id}/${name}` })).then(
    (h) => h.ContentLength,
    () => null,
  );
const processing = () => newTraining(fx.deps, { status: 'processing', run: { id: 'db-run', started: true, terminal: 'succeeded', output: null } });

describe('a good archive', () => {
  it("is streamed into S3 under staged/<id>/<the URL's file name> and the build env is right", async () => {
    const t = await processing();
    const out = await stageWeights(fx.deps, env, t.id, `${files.url}/good.zip?X-Amz-Signature=abc`);

    const key = `staged/${t.id}/good.zip`;
    // The template (127.0.0.1:5000) is in another registry than the model (ECR), and the model has no version yet.
    expect(out).toMatchObject({ bucket: fx.deps.bucket, key, size: archives['/good.zip']!.length, entries: 3, copies_template: true });
    expect(out.build_env).toEqual({
      TRAINING_ID: t.id,
      WEIGHTS_S3_URI: `s3://${fx.deps.bucket}/${key}`,
      WEIGHTS_FORMAT: 'zip',
      TEMPLATE_IMAGE: `127.0.0.1:5000/templates/vanilla@sha256:${TEMPLATE_DIGEST}`,
      IMAGE_REPOSITORY: `${REGISTRY_HOST}/dreambooth/alice/portrait`,
      IMAGE_TAG: t.id,
      NOTES_S3_URI: `s3://${fx.deps.bucket}/staged/${t.id}/build/notes.txt`,
    });
    const object = await fx.deps.s3.send(new GetObjectCommand({ Bucket: fx.deps.bucket, Key: key }));
    expect(Buffer.from(await object.Body!.transformToByteArray()).equals(archives['/good.zip']!)).toBe(true);
    expect(await fx.deps.store.getTraining(t.id)).toMatchObject({
      status: 'pushing',
      staged: { bucket: fx.deps.bucket, key, size: archives['/good.zip']!.length },
    });
  });

  it('hands the build its notes as an object beside the weights, whole (10,000 characters pass a CodeBuild variable), or none', async () => {
    const notes = `${'é'.repeat(9_998)}\n\n`;
    const t = await newTraining(fx.deps, { status: 'processing', notes, run: { id: 'db-run', started: true, terminal: 'succeeded', output: null } });
    const { build_env } = await stageWeights(fx.deps, env, t.id, `${files.url}/good.zip`);
    expect(Object.values(build_env).every((v) => v.length <= 4096)).toBe(true);
    const [, bucket, key] = build_env.NOTES_S3_URI.match(/^s3:\/\/([^/]+)\/(.+)$/)!;
    const object = await fx.deps.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    expect(await object.Body!.transformToString('utf8')).toBe(notes);

    const without = await newTraining(fx.deps, { status: 'processing', notes: null, run: { id: 'db-run', started: true, terminal: 'succeeded', output: null } });
    expect((await stageWeights(fx.deps, env, without.id, `${files.url}/good.zip`)).build_env.NOTES_S3_URI).toBe('');
  });

  it('copies no template when it is in a model registry that mounts layers, or a version of the model was built from it', async () => {
    const local = fx.withConfig({ registry: { type: 'oci', host: '127.0.0.1:5000', credentials_secret: 'reg' }, build: { blob_mounting: true } });
    const t = await processing();
    expect((await stageWeights(local, env, t.id, `${files.url}/good.zip`)).copies_template).toBe(false);
    const next = await newTraining(fx.deps, { model: 'alice/second', status: 'processing', run: { id: 'db-run', started: true, terminal: 'succeeded', output: null } });
    await fx.operator.store.putVersion({
      id: 'f'.repeat(64),
      model: 'alice/second',
      image: 'x',
      notes: null,
      training_id: t.id,
      template: next.template,
      created_at: new Date().toISOString(),
    });
    expect((await stageWeights(fx.deps, env, next.id, `${files.url}/good.zip`)).copies_template).toBe(false);
  });

  // A mount ECR refuses (BLOB_MOUNTING off, other encryption, a pull-through cache) answers 202
  // and the build copies the layers: gigabytes that may not fit Lambda compute's 15 minutes.
  it('copies the template into the model\'s first version when the registry is not known to mount layers, though it is the same registry', async () => {
    const sameRegistry = fx.withConfig({ registry: { type: 'oci', host: '127.0.0.1:5000', credentials_secret: 'reg' } });
    expect(sameRegistry.config.build.blob_mounting).toBe(false);
    const t = await processing();
    expect((await stageWeights(sameRegistry, env, t.id, `${files.url}/good.zip`)).copies_template).toBe(true);
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
    expect(await staged(t.id, 'missing.zip')).toBeNull();
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

/** A training whose template accepts any weights (a full image reference, or `weights: "any"` in the catalog). */
const anyTemplate = () =>
  newTraining(fx.deps, {
    status: 'processing',
    run: { id: 'db-run', started: true, terminal: 'succeeded', output: null },
    template: { name: 'flux', repository: '127.0.0.1:5000/templates/flux', digest: TEMPLATE_DIGEST, weights: 'any' },
  });

describe('trainer outputs as they come', () => {
  it.each([
    ['a tar of a diffusers pipeline, for a diffusers template', '/pipeline.tar', processing, 'tar', 3],
    ['a tar holding lora.safetensors', '/trained_model.tar', anyTemplate, 'tar', 1],
    ['a gzip tar', '/trained_model.tar.gz', anyTemplate, 'tar.gz', 2],
    ['a single file', '/lora.safetensors', anyTemplate, 'file', 1],
    ['a zip without model_index.json', '/lora-only.zip', anyTemplate, 'zip', 1],
  ])('%s is staged under its name, with its format for the build', async (_what, path, make, format, entries) => {
    const t = await make();
    const out = await stageWeights(fx.deps, env, t.id, `${files.url}${path}?sig=1`);
    const key = `staged/${t.id}${path}`;
    expect(out).toMatchObject({ key, format, entries, size: archives[path]!.length });
    expect(out.build_env).toMatchObject({ WEIGHTS_S3_URI: `s3://${fx.deps.bucket}/${key}`, WEIGHTS_FORMAT: format });
    expect(await staged(t.id, path.slice(1))).toBe(archives[path]!.length);
  });

  it.each([
    ['a single file for a diffusers template', '/lora.safetensors', processing, /single file \(lora\.safetensors\), but template vanilla loads a diffusers pipeline/],
    ['a zip without model_index.json for a diffusers template', '/lora-only.zip', processing, /no model_index\.json at its root/],
    ['a tar whose pipeline lacks a component, for a diffusers template', '/trained_model.tar', processing, /no model_index\.json at its root/],
    ['a symlink in a tar', '/symlink.tar', anyTemplate, /"lora\.safetensors" is a symlink/],
    ['a hard link in a tar', '/hardlink.tar', anyTemplate, /"b" is a link/],
    ['a "./" entry in a tar', '/dotslash.tar', anyTemplate, /"\.\/lora\.safetensors" is not a normalised path/],
    ['a ".." entry in a tar', '/dotdot.tar', anyTemplate, /"\.\.\/escape\.txt" has a "\.\." segment/],
    ['a gzip bomb', '/bomb.tar.gz', anyTemplate, /expands \d+-fold, more than the limit of 200/],
    ['a .tar that is no tar', '/fake.tar', anyTemplate, /named fake\.tar but is not a readable archive/],
    ['a gzip tar cut short', '/cut.tar.gz', anyTemplate, /not a readable tar\.gz/],
  ])('%s is BadArchive', async (_what, path, make, message) => {
    const t = await make();
    const err = await errorOf(stageWeights(fx.deps, env, t.id, `${files.url}${path}`));
    expect(err.name).toBe('BadArchive');
    expect(err.message).toMatch(message);
  });

  it('a tar over limits.archive_max_entries is BadArchive', async () => {
    const t = await anyTemplate();
    const err = await errorOf(stageWeights(fx.withConfig({ limits: { archive_max_entries: 2 } }), env, t.id, `${files.url}/pipeline.tar`));
    expect(err.message).toMatch(/more than 2 entries/);
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
