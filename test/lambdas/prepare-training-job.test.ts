/**
 * prepare-training-job and stage-weights for a sagemaker trainer: s3rver holds the request
 * channel and the job's output, dynalite the training, a real file server the user's photos.
 */
import { randomBytes } from 'node:crypto';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { prepareTrainingJob } from '#lambdas/prepare-training-job/core';
import { createUpload } from '#lambdas/upload/core';
import { stageWeights } from '#lambdas/stage-weights/core';
import { CAPACITY_ATTEMPTS, jobKeys } from '#shared/trainers/sagemaker/training-jobs';
import { newTraining, startFixture, startServer, type Fixture, type TestServer } from '#test-helpers/aws-local';

const IMAGE = `127.0.0.1:5000/trainers/dreambooth@sha256:${'b'.repeat(64)}`;
const GPU = { backend: 'sagemaker', image: IMAGE, spot: true, max_runtime_seconds: 3600, max_wait_seconds: 7200, mode: 'train' };
const ENV = {
  jobPrefix: 'db-0123abcd-',
  mirrorHost: '000000000000.dkr.ecr.us-east-1.amazonaws.com',
  // CloudFormation names the mirror repositories.
  mirrors: { gpu: 'dreamboothworkflowsagemakermirrorgpu-x1y2z3' },
  runner: '# the runner\n',
};
const photos = randomBytes(50_000);

let fx: Fixture;
let files: TestServer;
beforeAll(async () => {
  files = await startServer((_req, res) => res.writeHead(200, { 'content-type': 'application/zip', 'content-length': photos.length }).end(photos));
  fx = await startFixture({ as: 'prepare-training-job', config: { trainers: { gpu: GPU } } });
});
afterAll(async () => {
  await files?.close();
  await fx?.stop();
});

const gpuTraining = (input: Record<string, unknown> = {}) =>
  newTraining(fx.deps, { trainer: 'gpu', trainer_backend: 'sagemaker', input: { instance_prompt: 'a photo of sks person', instance_data: `${files.url}/my%20photos.zip?sig=x`, ...input } });
const read = async (key: string) => {
  const out = await fx.deps.s3.send(new GetObjectCommand({ Bucket: fx.deps.bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
};
const errorOf = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a failure'); }, (e: Error) => e);

describe('prepare-training-job', () => {
  it("lays out the request channel: the training's input with its files staged, the runner", async () => {
    const t = await gpuTraining();
    const plan = await prepareTrainingJob(fx.deps, ENV, t.id, false);
    const keys = jobKeys(t.id);
    const request = JSON.parse((await read(`${keys.request}request.json`)).toString());
    expect(request).toEqual({ id: t.run.id, mode: 'train', files: ['instance_data'], input: { instance_prompt: 'a photo of sks person', instance_data: 'request/inputs/instance_data/my_20photos.zip' } });
    expect((await read(`${keys.request}inputs/instance_data/my_20photos.zip`)).equals(photos)).toBe(true);
    expect((await read(`${keys.request}dreambooth_runner.py`)).toString()).toBe(ENV.runner);

    expect(plan).toEqual({
      name: `db-0123abcd-${t.id}`,
      image: `${ENV.mirrorHost}/${ENV.mirrors.gpu}@sha256:${'b'.repeat(64)}`,
      callback_url: expect.stringMatching(new RegExp(`^http://127\\.0\\.0\\.1:9/api/v1/callbacks/${t.id}\\?secret=[\\w-]{43}$`)),
      request_uri: `s3://${fx.deps.bucket}/${keys.request}`,
      output_uri: `s3://${fx.deps.bucket}/${keys.output}`,
      checkpoint_uri: `s3://${fx.deps.bucket}/${keys.checkpoints}`,
      resource_config: { InstanceType: 'ml.g5.2xlarge', InstanceCount: 1, VolumeSizeInGB: 100 },
      stopping_condition: { MaxRuntimeInSeconds: 3600, MaxWaitTimeInSeconds: 7200 },
      spot: true,
      retry_wait_seconds: expect.any(Number),
    });
    // The job's callback URL goes in its environment (the plan), and only there.
    const { callback_url: _, ...rest } = plan;
    expect(JSON.stringify(rest)).not.toContain('secret');
    const after = await fx.deps.store.getTraining(t.id);
    expect(after).toMatchObject({ status: 'processing', job: { name: plan.name, attempt: 0 }, run: { started: true } });
  });

  it('writes nothing secret into the request channel, which every job can read: no callback URL or secret, no input URL', async () => {
    const t = await gpuTraining();
    const plan = await prepareTrainingJob(fx.deps, ENV, t.id, false);
    const secret = new URL(plan.callback_url).searchParams.get('secret')!;
    const listed = await fx.operator.s3.send(new ListObjectsV2Command({ Bucket: fx.deps.bucket, Prefix: jobKeys(t.id).request }));
    const keys = (listed.Contents ?? []).map((o) => o.Key!);
    expect(keys).toHaveLength(3);
    for (const key of keys) {
      const body = (await read(key)).toString('latin1');
      expect(body, key).not.toContain(secret);
      expect(body, key).not.toContain('/callbacks/');
      expect(body, key).not.toContain('sig=x');
    }
  });

  it('downloads each input once however often it runs, and keeps the job name', async () => {
    const t = await gpuTraining({ instance_data: `${files.url}/once.zip` });
    const first = await prepareTrainingJob(fx.deps, ENV, t.id, false);
    const second = await prepareTrainingJob(fx.deps, ENV, t.id, false);
    expect(second.name).toBe(first.name);
    expect(files.requests.filter((r) => r.url === '/once.zip')).toHaveLength(1);
  });

  it('names a new job for each capacity retry, and gives up after the last attempt', async () => {
    const t = await gpuTraining({ instance_data: `${files.url}/retry.zip` });
    await prepareTrainingJob(fx.deps, ENV, t.id, false);
    const names = [];
    for (let i = 1; i < CAPACITY_ATTEMPTS; i++) names.push((await prepareTrainingJob(fx.deps, ENV, t.id, true)).name);
    expect(names).toEqual([1, 2, 3].slice(0, CAPACITY_ATTEMPTS - 1).map((n) => `db-0123abcd-${t.id}-${n}`));
    const err = await errorOf(prepareTrainingJob(fx.deps, ENV, t.id, true));
    expect(err.name).toBe('TrainerFailed');
    expect(err.message).toBe(`SageMaker had no ml.g5.2xlarge capacity in ${CAPACITY_ATTEMPTS} attempts; try again later, or configure another instance_type for trainer gpu`);
  });

  it('refuses an input URL the egress guard refuses', async () => {
    const t = await gpuTraining({ instance_data: 'http://169.254.169.254/latest/meta-data/x.zip' });
    const err = await errorOf(prepareTrainingJob(fx.deps, ENV, t.id, false));
    expect(err.name).toBe('TrainerFailed');
    expect(err.message).toContain('linkLocal');
  });

  it("stages our upload though the client's serving_url expired while the training waited: it signs its own GET", async () => {
    const upload = fx.clientsOf('upload');
    const { upload_url } = await createUpload(upload, 'queued.zip');
    expect((await fetch(upload_url, { method: 'PUT', headers: { 'content-type': 'application/zip' }, body: photos })).status).toBe(200);
    const key = decodeURIComponent(new URL(upload_url).pathname).slice(`/${upload.bucket}/`.length);
    const expired = await getSignedUrl(upload.s3, new GetObjectCommand({ Bucket: upload.bucket, Key: key }), { expiresIn: 60, signingDate: new Date(Date.now() - 2 * 3600_000) });
    expect((await fetch(expired)).status).toBe(403);
    const t = await gpuTraining({ instance_data: expired });

    await prepareTrainingJob(fx.deps, ENV, t.id, false);
    expect((await read(`${jobKeys(t.id).request}inputs/instance_data/queued.zip`)).equals(photos)).toBe(true);
  });

  it('runs the configured image itself when there is no mirror host (local mode)', async () => {
    const t = await gpuTraining({ instance_data: `${files.url}/local.zip` });
    expect((await prepareTrainingJob(fx.deps, { ...ENV, mirrorHost: '' }, t.id, false)).image).toBe(IMAGE);
  });
});

async function outputZip(): Promise<Buffer> {
  const z = new yazl.ZipFile();
  z.addBuffer(Buffer.from(JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'] })), 'model_index.json');
  z.addBuffer(randomBytes(10_000), 'unet/diffusion_pytorch_model.bin');
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("stage-weights on a SageMaker job's output", () => {
  // stage-weights under its own role: it reads the job's output and writes beside the staged weights.
  let sfx: Fixture;
  beforeAll(async () => {
    sfx = await startFixture({ as: 'stage-weights', config: { trainers: { gpu: GPU } } });
  });
  afterAll(() => sfx?.stop());
  const stagedTraining = () =>
    newTraining(sfx.deps, { trainer: 'gpu', trainer_backend: 'sagemaker', input: { instance_prompt: 'a photo of sks person', instance_data: 'https://example.com/x.zip' } });
  const env = { registryHost: '000000000000.dkr.ecr.us-east-1.amazonaws.com' };
  const putOutput = async (trainingId: string) => {
    const prefix = `${jobKeys(trainingId).output}db-0123abcd-${trainingId}/output/model/`;
    // The job writes it (the operator's client stands for the job's role).
    await sfx.operator.s3.send(new PutObjectCommand({ Bucket: sfx.deps.bucket, Key: `${prefix}output.zip`, Body: await outputZip() }));
    return `s3://${sfx.deps.bucket}/${prefix}`;
  };

  it('checks the archive where the job left it (no copy, no download) and builds from there', async () => {
    const t = await stagedTraining();
    await sfx.deps.store.updateTraining(t.id, { status: 'processing' });
    const prefix = await putOutput(t.id);
    const staged = await stageWeights(sfx.deps, env, t.id, prefix);
    expect(staged.key).toBe(`${prefix.replace(`s3://${sfx.deps.bucket}/`, '')}output.zip`);
    expect(staged.build_env.WEIGHTS_S3_URI).toBe(`${prefix}output.zip`);
    expect(staged.entries).toBe(2);
    expect((await sfx.deps.store.getTraining(t.id))?.staged?.key).toBe(staged.key);
    // A retry finds it staged and checks it again.
    expect(await stageWeights(sfx.deps, env, t.id, prefix)).toEqual(staged);
  });

  it.each([
    ['the model prefix without its trailing slash (SageMaker promises none)', (prefix: string) => prefix.replace(/\/$/, '')],
    ['the model prefix with more than one slash', (prefix: string) => `${prefix}/`],
    ['the archive object itself', (prefix: string) => `${prefix}output.zip`],
  ])('finds the archive when S3ModelArtifacts names %s', async (_what, artifacts) => {
    const t = await stagedTraining();
    await sfx.deps.store.updateTraining(t.id, { status: 'processing' });
    const prefix = await putOutput(t.id);
    const staged = await stageWeights(sfx.deps, env, t.id, artifacts(prefix));
    expect(staged.build_env.WEIGHTS_S3_URI).toBe(`${prefix}output.zip`);
    expect(staged.entries).toBe(2);
  });

  it("refuses another training's job output", async () => {
    const [mine, other] = [await stagedTraining(), await stagedTraining()];
    const err = await errorOf(stageWeights(sfx.deps, env, mine.id, await putOutput(other.id)));
    expect(err.name).toBe('TrainerFailed');
    expect(err.message).toContain("is not this training's job output");
  });

  it("says a re-template's source archive has expired when it is gone", async () => {
    const source = await stagedTraining();
    const key = `${jobKeys(source.id).output}job/output/model/output.zip`;
    const t = await stagedTraining();
    await sfx.deps.store.updateTraining(t.id, { status: 'pushing', retemplate_of: source.id, staged: { bucket: sfx.deps.bucket, key, size: 1 } });
    const err = await errorOf(stageWeights(sfx.deps, env, t.id, `s3://${sfx.deps.bucket}/${key}`));
    expect(err.message).toBe(`the weights of training ${source.id} have expired (staged archives are kept retention.staged_archive_days)`);
  });

  it('says the runner wrote no archive when the job left none', async () => {
    const t = await stagedTraining();
    const err = await errorOf(stageWeights(sfx.deps, env, t.id, `s3://${sfx.deps.bucket}/${jobKeys(t.id).output}job/output/model/`));
    expect(err.message).toBe('the SageMaker job left no output.zip (the runner writes model/output.zip)');
  });
});
