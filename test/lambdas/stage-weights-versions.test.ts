/**
 * stage-weights for weights versions: a training on a template that takes its weights as an
 * input stages the trainer's file and copies it to `weights/<sha256>` (no build); a retry copies
 * nothing; and a re-template of such a version onto a built template builds from the staged
 * output, or from the weights object once the staged copy has expired. A real file server plays
 * the trainer's upload store; s3rver and dynalite hold the objects and records; the record and
 * api functions run with their own roles.
 */
import { createHash, randomBytes } from 'node:crypto';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { stageWeights } from '#lambdas/stage-weights/core';
import { record, type RecordDeps } from '#lambdas/record/core';
import { retemplate } from '#lambdas/api/create';
import type { ApiDeps } from '#lambdas/api/types';
import { logger, setLogSink } from '#shared/log';
import type { TrainingRecord } from '#shared/training';
import { jobKeys } from '#shared/trainers/sagemaker/training-jobs';
import { weightsVersionId } from '#shared/weights-version';
import { newTraining, startFixture, startServer, type Fixture, type TestServer } from '#test-helpers/aws-local';

const env = { registryHost: '000000000000.dkr.ecr.us-east-1.amazonaws.com' };
const LORA_DIGEST = 'b'.repeat(64);
const FLUX_DIGEST = 'c'.repeat(64);
const LORA = { name: 'lora2', repository: '127.0.0.1:5000/templates/lora2', digest: LORA_DIGEST, weights: 'any' as const, weights_input: 'replicate_weights' };
const weights = randomBytes(48 * 1024);
const sha256 = createHash('sha256').update(weights).digest('hex');

let fx: Fixture;
let files: TestServer;

beforeAll(async () => {
  setLogSink(() => undefined);
  files = await startServer((req, res) => {
    if (req.url.split('?')[0] !== '/lora.safetensors') return void res.writeHead(404).end('not found');
    res.writeHead(200, { 'content-length': weights.length }).end(weights);
  });
  fx = await startFixture({
    as: 'stage-weights',
    config: {
      templates: {
        catalog: {
          lora2: { repository: LORA.repository, digests: [LORA_DIGEST], weights: { format: 'any', input: 'replicate_weights' } },
          flux: { repository: '127.0.0.1:5000/templates/flux', digests: [FLUX_DIGEST], weights: 'any' },
        },
      },
      trainers: { gpu: { backend: 'sagemaker', image: `127.0.0.1:5000/trainers/dreambooth@sha256:${'d'.repeat(64)}`, mode: 'train' } },
    },
  });
});
afterAll(async () => {
  await files?.close();
  await fx?.stop();
});

const hits = () => files.requests.filter((r) => r.url.split('?')[0] === '/lora.safetensors').length;
const errorOf = (p: Promise<unknown>) => p.then(() => new Error('no error'), (e: Error) => e);
const bytesAt = async (key: string) =>
  Buffer.from(await (await fx.operator.s3.send(new GetObjectCommand({ Bucket: fx.deps.bucket, Key: key }))).Body!.transformToByteArray());
const exists = (key: string) =>
  fx.operator.s3.send(new HeadObjectCommand({ Bucket: fx.deps.bucket, Key: key })).then(
    () => true,
    () => false,
  );
const onTemplate = (template: TrainingRecord['template'], model = 'alice/portrait') =>
  newTraining(fx.deps, { model, status: 'processing', template, run: { id: 'db-run', started: true, terminal: 'succeeded', output: `${files.url}/lora.safetensors` } });

describe('a training on a template that takes its weights as an input', () => {
  it('stages the single file and copies it to weights/<sha256>, the result saying so', async () => {
    const t = await onTemplate(LORA);
    const out = await stageWeights(fx.deps, env, t.id, `${files.url}/lora.safetensors?sig=1`);
    expect(out).toMatchObject({ kind: 'weights', key: `staged/${t.id}/lora.safetensors`, format: 'file', size: weights.length, copies_template: false });
    expect(out.weights).toEqual({ key: `weights/${sha256}`, size: weights.length, sha256 });
    expect((await bytesAt(`weights/${sha256}`)).equals(weights)).toBe(true);
  });

  it('a retry downloads and copies nothing and returns the same', async () => {
    const t = await onTemplate(LORA, 'alice/retry');
    const url = `${files.url}/lora.safetensors?attempt=${t.id}`;
    const first = await stageWeights(fx.deps, env, t.id, url);
    // Same size, other bytes: a retry that copied again would put the weights back.
    const marker = Buffer.alloc(weights.length, 7);
    await fx.operator.s3.send(new PutObjectCommand({ Bucket: fx.deps.bucket, Key: first.weights!.key, Body: marker }));
    const second = await stageWeights(fx.deps, env, t.id, url);
    expect(second).toEqual(first);
    expect((await bytesAt(first.weights!.key)).equals(marker)).toBe(true);
    expect(files.requests.filter((r) => r.url === `/lora.safetensors?attempt=${t.id}`)).toHaveLength(1);
    await fx.operator.s3.send(new PutObjectCommand({ Bucket: fx.deps.bucket, Key: first.weights!.key, Body: weights }));
  });

  it('a single file is still refused when the template loads a diffusers pipeline, and no weights object is written', async () => {
    const other = randomBytes(1024);
    const path = '/other.safetensors';
    const server = await startServer((_req, res) => void res.writeHead(200, { 'content-length': other.length }).end(other));
    try {
      for (const template of [{ ...LORA, weights: 'diffusers' as const }, { name: 'vanilla', repository: LORA.repository, digest: LORA_DIGEST }]) {
        const t = await onTemplate(template);
        const err = await errorOf(stageWeights(fx.deps, env, t.id, `${server.url}${path}`));
        expect(err.name).toBe('BadArchive');
        expect(err.message).toMatch(/single file \(other\.safetensors\), but template \w+ loads a diffusers pipeline/);
      }
    } finally {
      await server.close();
    }
    expect(await exists(`weights/${createHash('sha256').update(other).digest('hex')}`)).toBe(false);
  });
});

/** A weights version of `model` as the workflow makes it: stage-weights, then record's weights_version. */
async function weightsVersion(model: string, trained: (model: string) => Promise<{ t: TrainingRecord; output: string; bytes: Buffer }> = byCog): Promise<TrainingRecord> {
  const { t, output, bytes } = await trained(model);
  const out = await stageWeights(fx.deps, env, t.id, output);
  const recorder = { ...fx.clientsOf('record'), logs: undefined } as unknown as RecordDeps;
  expect(await record(recorder, { action: 'weights_version', training_id: t.id, weights: out.weights! })).toEqual({ status: 'succeeded' });
  const source = (await fx.deps.store.getTraining(t.id))!;
  expect(source.version).toBe(weightsVersionId(model, LORA_DIGEST, createHash('sha256').update(bytes).digest('hex')));
  return source;
}

const byCog = async (model: string) => ({ t: await onTemplate(LORA, model), output: `${files.url}/lora.safetensors`, bytes: weights });

/** The same bytes whenever it is made: a zip holds its entries' times (to two seconds), so they are fixed. */
async function zipOf(name: string, data: Buffer): Promise<Buffer> {
  const z = new yazl.ZipFile();
  z.addBuffer(data, name, { mtime: new Date('2026-01-01T00:00:00Z') });
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A SageMaker job's output: staged where the job left it (under sagemaker/, which expires too). */
async function bySageMaker(model: string) {
  const t = await newTraining(fx.deps, { model, status: 'processing', trainer: 'gpu', trainer_backend: 'sagemaker', template: LORA });
  const prefix = `${jobKeys(t.id).output}db-0123abcd-${t.id}/output/model/`;
  // The job writes it (the operator's client stands for the job's role).
  const bytes = await zipOf('lora.safetensors', weights);
  await fx.operator.s3.send(new PutObjectCommand({ Bucket: fx.deps.bucket, Key: `${prefix}output.zip`, Body: bytes }));
  return { t, output: `s3://${fx.deps.bucket}/${prefix}`, bytes };
}

/** POST /v1/models/{owner}/{name}/versions onto flux, as the api function. */
async function retemplateOntoFlux(source: TrainingRecord): Promise<TrainingRecord> {
  const [owner, name] = source.model.split('/') as [string, string];
  const api = {
    ...fx.clientsOf('api'),
    stateMachineArn: fx.local.stateMachineArn,
    log: logger('api'),
    templates: { exists: async () => true, inspect: async () => ({ problem: null }), openApi: async () => null },
  } as unknown as ApiDeps;
  const req = { method: 'POST', resource: '/v1/models/{owner}/{name}/versions', params: { owner, name }, query: {}, owners: [owner], body: JSON.stringify({ training_id: source.id, template_version: 'flux' }) };
  const res = await retemplate(api, req, owner, name);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const t = (await fx.deps.store.getTraining((res.body as { id: string }).id))!;
  expect(t).toMatchObject({ retemplate_of: source.id, template: { name: 'flux', weights: 'any' } });
  expect(t.template.weights_input).toBeUndefined();
  return t;
}

describe('a weights version re-templated onto a built template', () => {
  it('builds from the staged output while the bucket keeps it', async () => {
    const source = await weightsVersion('alice/staged');
    const t = await retemplateOntoFlux(source);
    const before = hits();
    const out = await stageWeights(fx.deps, env, t.id, t.run.output!);
    expect(out).toMatchObject({ kind: 'image', key: source.staged!.key, format: 'file', size: weights.length });
    expect(out.weights).toBeUndefined();
    expect(out.build_env).toMatchObject({ WEIGHTS_S3_URI: `s3://${fx.deps.bucket}/${source.staged!.key}`, WEIGHTS_FORMAT: 'file', TEMPLATE_IMAGE: `127.0.0.1:5000/templates/flux@sha256:${FLUX_DIGEST}` });
    expect(hits()).toBe(before);
  });

  it('builds from weights/<sha256> once the staged copy has expired, downloading nothing', async () => {
    const source = await weightsVersion('alice/expired');
    // What the staged/ rule does after retention.staged_archive_days.
    await fx.operator.s3.send(new DeleteObjectCommand({ Bucket: fx.deps.bucket, Key: source.staged!.key }));
    expect(await exists(source.staged!.key)).toBe(false);
    const t = await retemplateOntoFlux(source);
    const before = hits();
    const out = await stageWeights(fx.deps, env, t.id, t.run.output!);
    expect(out).toMatchObject({ kind: 'image', format: 'file', size: weights.length });
    const key = out.build_env.WEIGHTS_S3_URI.replace(`s3://${fx.deps.bucket}/`, '');
    // Restaged under the re-template's own folder, with the archive's name.
    expect(key).toBe(`staged/${t.id}/lora.safetensors`);
    expect(out.key).toBe(key);
    expect((await bytesAt(key)).equals(weights)).toBe(true);
    expect(hits()).toBe(before);
  });

  it("builds from weights/<sha256> once a SageMaker job's output has expired", async () => {
    const source = await weightsVersion('alice/gpu', bySageMaker);
    expect(source.staged!.key).toMatch(/^sagemaker\//);
    await fx.operator.s3.send(new DeleteObjectCommand({ Bucket: fx.deps.bucket, Key: source.staged!.key }));
    const t = await retemplateOntoFlux(source);
    const out = await stageWeights(fx.deps, env, t.id, t.run.output!);
    const job = await zipOf('lora.safetensors', weights);
    expect(out).toMatchObject({ kind: 'image', key: `staged/${t.id}/output.zip`, format: 'zip', size: job.length });
    expect((await bytesAt(out.build_env.WEIGHTS_S3_URI.replace(`s3://${fx.deps.bucket}/`, ''))).equals(job)).toBe(true);
  });
});
