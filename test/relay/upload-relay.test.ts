/**
 * The Cog upload relay (relay/) against the trainer-upload routes: the real
 * trainer-uploads handler behind local mode's API Gateway stand-in, s3rver as S3, and
 * stage-weights taking the `s3://` location the relay answers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { resetRuntimeConfig } from '#shared/runtime-config';
import { setLogSink } from '#shared/log';
import { startUploadRelay } from '#relay/server';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { startApiGateway } from '#infra/local/apigateway';
import { restApiOf } from '#infra/local/cloudformation/rest-api';
import { synthesize } from '#infra/local/cloudformation/synthesize';
import { stageWeights } from '#lambdas/stage-weights/core';
import { handler } from '#lambdas/trainer-uploads/handler';
import { presignClient, trainerUpload } from '#lambdas/trainer-uploads/core';
import { newTraining, startFixture, type Fixture } from '#test-helpers/aws-local';

const MiB = 1024 * 1024;
const TOKEN = `upl_${randomBytes(24).toString('hex')}`;
const CONFIG = {
  trainers: {
    mycog: { backend: 'cog', url: 'http://127.0.0.1:9', upload_token_secret: 'local/upload-mycog' },
    other: { backend: 'cog', url: 'http://127.0.0.1:9', upload_token_secret: 'local/upload-other' },
    plain: { backend: 'cog', url: 'http://127.0.0.1:9' },
  },
};
const env = { registryHost: '000000000000.dkr.ecr.us-east-1.amazonaws.com' };

let fx: Fixture;
let api: Awaited<ReturnType<typeof startApiGateway>>;
const logs: string[] = [];
/** Paths the API stand-in saw, to count parts. */
const seen: string[] = [];

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const errorOf = (p: Promise<unknown>) => p.then(() => new Error('no error'), (e: Error) => e);

async function zip(files: Record<string, Buffer>): Promise<Buffer> {
  const z = new yazl.ZipFile();
  for (const [name, data] of Object.entries(files)) z.addBuffer(data, name, { compress: false });
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function objectBytes(key: string): Promise<Buffer> {
  const out = await fx.operator.s3.send(new GetObjectCommand({ Bucket: fx.deps.bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

/** Cog's upload: PUT `<upload-url><filename>` with the raw file, its type and the prediction id. */
function cogPut(relayUrl: string, filename: string, data: Buffer, predictionId: string | null = 'db-run') {
  const headers: Record<string, string> = { 'content-type': 'application/zip' };
  if (predictionId) headers['x-prediction-id'] = predictionId;
  return fetch(relayUrl + filename, { method: 'PUT', body: data, headers });
}

beforeAll(async () => {
  fx = await startFixture({
    as: 'trainer-uploads',
    config: CONFIG,
    secrets: { 'local/upload-mycog': JSON.stringify({ key: TOKEN }), 'local/upload-other': 'another-token' },
  });
  // The handler builds its deps from the environment, as in a Lambda.
  process.env.DREAMBOOTH_CONFIG = JSON.stringify(fx.deps.config);
  resetRuntimeConfig();
  setLogSink((line) => logs.push(line));
  // The routes the synthesized template gives API Gateway, as local mode serves them.
  const restApi = restApiOf(synthesize(fx.deps.config));
  api = await startApiGateway({
    port: 0,
    api: restApi,
    invoke: async (fn, event) => {
      if (fn === 'authorizer') throw new Error('the trainer routes take no API token');
      if (fn !== 'trainer-uploads') return { statusCode: 404, body: '{}' };
      seen.push((event as APIGatewayProxyEvent).path);
      return handler(event as APIGatewayProxyEvent);
    },
    storage: { s3: fx.deps.s3, bucket: fx.deps.bucket },
  });
}, 60_000);
afterAll(async () => {
  await api?.stop();
  await fx?.stop();
});

describe('the relay', () => {
  it('streams a 40 MiB archive to S3 in 16 MiB parts and answers its s3:// location, which stage-weights stages', async () => {
    const archive = await zip({ 'model_index.json': Buffer.from('{}'), 'unet/weights.bin': randomBytes(40 * MiB) });
    const t = await newTraining(fx.operator, { trainer: 'mycog', status: 'processing', run: { id: 'db-run', started: true, terminal: 'succeeded', output: null } });
    const relay = await startUploadRelay({ api: api.url, trainer: 'mycog', token: TOKEN, partSize: 16 * MiB, log: () => undefined });
    try {
      seen.length = 0;
      const res = await cogPut(relay.url, 'output.zip', archive);
      expect(res.status).toBe(201);
      const location = res.headers.get('location')!;
      expect(location).toMatch(new RegExp(`^s3://${fx.deps.bucket}/trainer-outputs/mycog/[0-9a-f]{32}/output\\.zip$`));
      expect(seen.filter((p) => /\/parts\/\d+$/.test(p))).toHaveLength(3);

      const key = location.slice(`s3://${fx.deps.bucket}/`.length);
      expect(sha256(await objectBytes(key))).toBe(sha256(archive));
      const head = await fx.operator.s3.send(new HeadObjectCommand({ Bucket: fx.deps.bucket, Key: key }));
      expect(head.Metadata?.['prediction-id']).toBe('db-run');
      expect(head.ContentType).toBe('application/zip');

      const staged = await stageWeights(fx.clientsOf('stage-weights'), env, t.id, location);
      expect(staged).toMatchObject({ key: `staged/${t.id}/output.zip`, size: archive.length, entries: 2 });
      expect(sha256(await objectBytes(staged.key))).toBe(sha256(archive));

      // Nothing secret reached the logs.
      const text = logs.join('\n');
      expect(text).toContain('trainer upload');
      expect(text).not.toContain(TOKEN);
      expect(text).not.toMatch(/X-Amz-Signature/i);
    } finally {
      await relay.stop();
    }
  });

  it('streams archives above the copy limit through stage-weights instead of copying them', async () => {
    const archive = await zip({ 'model_index.json': Buffer.from('{"small": true}') });
    const t = await newTraining(fx.operator, { trainer: 'mycog', status: 'processing', run: { id: 'db-small', started: true, terminal: 'succeeded', output: null } });
    const relay = await startUploadRelay({ api: api.url, trainer: 'mycog', token: TOKEN, log: () => undefined });
    try {
      const res = await cogPut(relay.url, 'output.zip', archive, 'db-small');
      expect(res.status).toBe(201);
      const staged = await stageWeights(fx.clientsOf('stage-weights'), { ...env, copyMaxBytes: 0 }, t.id, res.headers.get('location')!);
      expect(sha256(await objectBytes(staged.key))).toBe(sha256(archive));
    } finally {
      await relay.stop();
    }
  });

  it('relays an empty file as one empty part', async () => {
    const relay = await startUploadRelay({ api: api.url, trainer: 'mycog', token: TOKEN, log: () => undefined });
    try {
      const res = await cogPut(relay.url, 'empty.txt', Buffer.alloc(0));
      expect(res.status).toBe(201);
      const key = res.headers.get('location')!.slice(`s3://${fx.deps.bucket}/`.length);
      expect((await objectBytes(key)).length).toBe(0);
    } finally {
      await relay.stop();
    }
  });

  it('fails the PUT with the reason when the token is wrong, and creates nothing', async () => {
    const before = await fx.operator.s3.send(new ListObjectsV2Command({ Bucket: fx.deps.bucket, Prefix: 'trainer-outputs/' }));
    const errors: string[] = [];
    const wrong = `upl_${randomBytes(24).toString('hex')}`;
    const relay = await startUploadRelay({ api: api.url, trainer: 'mycog', token: wrong, log: (l) => errors.push(l) });
    try {
      const res = await cogPut(relay.url, 'output.zip', randomBytes(1024));
      expect(res.status).toBe(502);
      expect(((await res.json()) as { detail: string }).detail).toContain('401');
      expect(errors.join('\n')).toContain('DREAMBOOTH_UPLOAD_TOKEN');
      expect(errors.join('\n')).not.toContain(wrong);
    } finally {
      await relay.stop();
    }
    const after = await fx.operator.s3.send(new ListObjectsV2Command({ Bucket: fx.deps.bucket, Prefix: 'trainer-outputs/' }));
    expect(after.KeyCount).toBe(before.KeyCount);
  });

  it('refuses an upload without X-Prediction-ID', async () => {
    const relay = await startUploadRelay({ api: api.url, trainer: 'mycog', token: TOKEN, log: () => undefined });
    try {
      const res = await cogPut(relay.url, 'output.zip', randomBytes(16), null);
      expect(res.status).toBe(502);
      expect(((await res.json()) as { detail: string }).detail).toContain('X-Prediction-ID');
    } finally {
      await relay.stop();
    }
  });
});

describe('the trainer-upload routes', () => {
  const create = (trainer: string, authorization?: string) =>
    trainerUpload(fx.deps, { action: 'create', trainer }, authorization, JSON.stringify({ filename: 'output.zip', prediction_id: 'db-x', content_type: 'application/zip' }));

  it('answer 401 to a wrong, missing or other trainer\'s token, and for trainers without an upload token', async () => {
    expect((await create('mycog', `Bearer ${TOKEN}`)).status).toBe(201);
    expect((await create('mycog', 'Bearer wrong')).status).toBe(401);
    expect((await create('mycog', undefined)).status).toBe(401);
    expect((await create('mycog', 'Bearer another-token')).status).toBe(401);
    expect((await create('other', 'Bearer another-token')).status).toBe(201);
    expect((await create('plain', 'Bearer ')).status).toBe(401);
    expect((await create('nosuch', `Bearer ${TOKEN}`)).status).toBe(401);
    expect((await create('constructor', `Bearer ${TOKEN}`)).status).toBe(401);
    const created = await create('mycog', `Bearer ${TOKEN}`);
    const uploadId = String(created.body.upload_id);
    const part = await trainerUpload(fx.deps, { action: 'part', trainer: 'mycog', uploadId, part: '1' }, 'Bearer wrong', '');
    expect(part).toEqual({ status: 401, body: { detail: 'upload token is missing or wrong' } });
  });

  it("keep a trainer's token away from another trainer's uploads", async () => {
    const created = await create('mycog', `Bearer ${TOKEN}`);
    const uploadId = String(created.body.upload_id);
    const other = await trainerUpload(fx.deps, { action: 'part', trainer: 'other', uploadId, part: '1' }, 'Bearer another-token', '');
    expect(other.status).toBe(404);
    const own = await trainerUpload(fx.deps, { action: 'part', trainer: 'mycog', uploadId, part: '1' }, `Bearer ${TOKEN}`, '');
    expect(own.status).toBe(200);
    expect(String(own.body.url)).toContain('partNumber=1');
  });

  it('refuse bad bodies and part numbers, naming the field', async () => {
    const bad = await trainerUpload(fx.deps, { action: 'create', trainer: 'mycog' }, `Bearer ${TOKEN}`, JSON.stringify({ filename: 'x' }));
    expect(bad.status).toBe(400);
    expect(bad.body.detail).toContain('prediction_id');
    const uploadId = String((await create('mycog', `Bearer ${TOKEN}`)).body.upload_id);
    for (const part of ['0', '10001', 'abc']) {
      expect((await trainerUpload(fx.deps, { action: 'part', trainer: 'mycog', uploadId, part }, `Bearer ${TOKEN}`, '')).status).toBe(400);
    }
    const complete = await trainerUpload(fx.deps, { action: 'complete', trainer: 'mycog', uploadId }, `Bearer ${TOKEN}`, JSON.stringify({ parts: [] }));
    expect(complete.status).toBe(400);
    expect(complete.body.detail).toContain('parts');
  });

  it('keep the object name to one harmless path segment', async () => {
    const created = await trainerUpload(
      fx.deps,
      { action: 'create', trainer: 'mycog' },
      `Bearer ${TOKEN}`,
      JSON.stringify({ filename: '../../staged/x/output.zip', prediction_id: 'db-x' }),
    );
    expect(created.body.key).toMatch(/^trainer-outputs\/mycog\/[0-9a-f]{32}\/[A-Za-z0-9._-]+$/);
  });

  it('presign parts without a checksum of the empty body (which S3 would hold against every real part)', async () => {
    const saved = process.env.AWS_REQUEST_CHECKSUM_CALCULATION;
    delete process.env.AWS_REQUEST_CHECKSUM_CALCULATION;
    try {
      const command = () => new UploadPartCommand({ Bucket: fx.deps.bucket, Key: 'k', UploadId: 'u', PartNumber: 1 });
      // The SDK's default does add one: this test would see a regression.
      expect(await getSignedUrl(new S3Client({ forcePathStyle: true }), command())).toMatch(/x-amz-checksum-crc32=/);
      expect(await getSignedUrl(presignClient(), command())).not.toMatch(/x-amz-checksum|x-amz-sdk-checksum/);
    } finally {
      process.env.AWS_REQUEST_CHECKSUM_CALCULATION = saved;
    }
  });
});

describe('stage-weights and s3:// locations', () => {
  let key: string;
  beforeAll(async () => {
    const relay = await startUploadRelay({ api: api.url, trainer: 'mycog', token: TOKEN, log: () => undefined });
    const res = await cogPut(relay.url, 'output.zip', await zip({ 'model_index.json': Buffer.from('{}') }), 'db-mine');
    await relay.stop();
    key = res.headers.get('location')!.slice(`s3://${fx.deps.bucket}/`.length);
  });
  const training = (trainer: string, runId: string) =>
    newTraining(fx.operator, { trainer, status: 'processing', run: { id: runId, started: true, terminal: 'succeeded', output: null } });

  it.each([
    ['another bucket', () => `s3://someone-elses-bucket/${key}`],
    ['another prefix of our bucket', () => `s3://${fx.deps.bucket}/staged/${'a'.repeat(26)}/output.zip`],
    ['a path that climbs out', () => `s3://${fx.deps.bucket}/trainer-outputs/mycog/../../staged/x/output.zip`],
  ])('refuses %s', async (_what, url) => {
    const t = await training('mycog', 'db-mine');
    const e = await errorOf(stageWeights(fx.clientsOf('stage-weights'), env, t.id, url()));
    expect(e.name).toBe('TrainerFailed');
    expect(e.message).toContain('not an upload of this trainer');
  });

  it("refuses another trainer's upload", async () => {
    const t = await training('other', 'db-mine');
    const e = await errorOf(stageWeights(fx.clientsOf('stage-weights'), env, t.id, `s3://${fx.deps.bucket}/${key}`));
    expect(e.message).toContain('not an upload of this trainer');
  });

  it('refuses an upload made for another prediction', async () => {
    const t = await training('mycog', 'db-someone-else');
    const e = await errorOf(stageWeights(fx.clientsOf('stage-weights'), env, t.id, `s3://${fx.deps.bucket}/${key}`));
    expect(e.name).toBe('TrainerFailed');
    expect(e.message).toContain('another prediction');
  });

  it('says so when the upload is gone', async () => {
    const t = await training('mycog', 'db-mine');
    const e = await errorOf(stageWeights(fx.clientsOf('stage-weights'), env, t.id, `s3://${fx.deps.bucket}/trainer-outputs/mycog/${'0'.repeat(32)}/output.zip`));
    expect(e.message).toContain('does not exist');
  });

  it('stages the upload made for this prediction', async () => {
    const t = await training('mycog', 'db-mine');
    const out = await stageWeights(fx.clientsOf('stage-weights'), env, t.id, `s3://${fx.deps.bucket}/${key}`);
    expect(out.entries).toBe(1);
  });
});
