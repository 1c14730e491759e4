/**
 * The `sagemaker` backend end to end through local mode: each training's job runs a real
 * container on the docker engine — an image built here from the machine's own Python whose
 * `python -m cog.server.http` speaks Cog's protocol (test/helpers/python-image.ts) — with the
 * runner as its entrypoint, as SageMaker would run it. Needs a docker engine and a registry:
 * skipped outside CI when either is missing, a failure in CI.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { CALLBACK_URL_ENV, CONTAINER_ENTRYPOINT } from '#shared/trainers/sagemaker/training-jobs';
import { RUNNER_SOURCE_PATH } from '#infra/constructs/function';
import { runLocalTrainingJob } from '#infra/local/sagemaker/training-job';
import { startFixture, type Fixture } from '#test-helpers/aws-local';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { inspectImage } from '#test-helpers/images';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';
import { buildPythonCogImage, dockerEngine } from '#test-helpers/python-image';
import { registryAvailable, startRegistry, type TestRegistry } from '#test-helpers/registry';

const terminal = (s: string) => ['succeeded', 'failed', 'canceled'].includes(s);
const engine = dockerEngine('the sagemaker e2e tests');
const registry = engine && (Boolean(process.env.DREAMBOOTH_TEST_REGISTRY) || registryAvailable());

async function photosZip(): Promise<Buffer> {
  const z = new yazl.ZipFile();
  z.addBuffer(randomBytes(10_000), 'person/1.png');
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const JOB_ROLE = 'arn:aws:iam::000000000000:role/JobRole';
const running = (job: string) => execFileSync('docker', ['ps', '-q', '--filter', `name=^${job}$`], { encoding: 'utf8' }).trim();

describe.skipIf(!registry)('the sagemaker backend through local mode (a real container)', () => {
  let local: Local;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let own: TestRegistry | undefined;
  let secret: string;
  const INPUT = { instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', steps: 3 };

  beforeAll(async () => {
    const host = process.env.DREAMBOOTH_TEST_REGISTRY ?? (own = await startRegistry()).host;
    const image = await buildPythonCogImage(host, `sagemaker-e2e/cog-stand-in-${process.pid}`);
    receiver = await startReceiver();
    receiver.serve('/person.zip', await photosZip());
    local = await startLocal({
      build: 'append',
      registry: process.env.DREAMBOOTH_TEST_REGISTRY,
      config: { trainers: { gpu: { backend: 'sagemaker', image, max_runtime_seconds: 600 } } },
    });
    // The key of acme, whose trainings these are (local mode's token acts for any owner: it names one).
    secret = (await local.api('GET', '/v1/webhooks/default/secret?owner=acme')).json.key;
  }, 180_000);
  afterAll(async () => {
    await local?.stop();
    await receiver?.stop();
    await own?.stop();
  });

  const train = async (input: Record<string, unknown>, hook: string) => {
    const created = await local.api('POST', '/v1/trainings', {
      input: { ...INPUT, instance_data: `${receiver.base}/person.zip`, ...input },
      trainer_version: 'gpu',
      model: 'acme/sagemaker',
      webhook_completed: `${receiver.base}${hook}`,
    });
    expect(created.status).toBe(201);
    return created.json.id as string;
  };
  const get = async (id: string) => (await local.api('GET', `/v1/trainings/${id}`)).json;
  const finished = (id: string) =>
    waitFor(`training ${id} to end`, async () => {
      const t = await get(id);
      return terminal(t.status) ? t : null;
    }, 150_000);
  const webhookFor = (path: string) => waitFor(`webhook ${path}`, async () => receiver.hooks.find((h) => h.url.startsWith(path)), 60_000);

  it('runs the job in a container through the runner and ends with a version, logs and a signed webhook', async () => {
    const id = await train({ steps: 20, step_seconds: 0.25 }, '/done');
    // `processing` while the job runs, and the logs fill as it goes (the runner reports them).
    const midway = await waitFor('logs while the job runs', async () => {
      const t = await get(id);
      return t.status === 'processing' && /step \d+\/20/.test(t.logs ?? '') ? t : null;
    }, 90_000);
    expect(midway.logs).not.toContain('step 20/20');

    const done = await finished(id);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.logs).toContain('step 20/20');
    expect(done.logs).toContain('downloaded instance_data');
    const version = await local.api('GET', `/v1/models/acme/sagemaker/versions/${done.version}`);
    const files = (await inspectImage(version.json.image)).lastLayerFiles;
    expect(files).toContain('src/weights/model_index.json');
    expect(files).toContain('src/weights/inputs.json');

    const hook = await webhookFor('/done');
    expect(hook.json.status).toBe('succeeded');
    expect(hook.json.version).toBe(done.version);
    expect(() => new Webhook(secret).verify(hook.body, hook.headers as Record<string, string>)).not.toThrow();
  }, 180_000);

  it("fails with the trainer's own error (the runner's output/failure) and sends the webhook", async () => {
    const id = await train({ fail_with: 'CUDA out of memory. Tried to allocate 2.00 GiB' }, '/failed');
    const done = await finished(id);
    expect(done.status).toBe('failed');
    expect(done.error).toContain('CUDA out of memory. Tried to allocate 2.00 GiB');
    expect(done.error).toContain('the SageMaker training job');
    expect((await webhookFor('/failed')).json.status).toBe('failed');
  }, 180_000);

  it('cancel stops the job: its container gets SIGTERM and is gone', async () => {
    const id = await train({ steps: 2000, step_seconds: 0.1 }, '/canceled');
    await waitFor('the job to run', async () => /step \d+/.test((await get(id)).logs ?? ''), 90_000);
    const job = execFileSync('docker', ['ps', '--format', '{{.Names}}'], { encoding: 'utf8' }).split('\n').find((n) => n.includes(id));
    expect(job).toBeTruthy();
    expect((await local.api('POST', `/v1/trainings/${id}/cancel`)).json.status).toBe('canceled');
    await waitFor('the container to stop', async () => running(job!) === '', 30_000);
    expect((await get(id)).status).toBe('canceled');
    expect((await webhookFor('/canceled')).json.status).toBe('canceled');
  }, 180_000);
});

describe.skipIf(!registry)("local mode's SageMaker stand-in on its own (a real container)", () => {
  let fx: Fixture;
  let image: string;
  let own: TestRegistry | undefined;
  beforeAll(async () => {
    const host = process.env.DREAMBOOTH_TEST_REGISTRY ?? (own = await startRegistry()).host;
    image = await buildPythonCogImage(host, `sagemaker-e2e/stand-in-${process.pid}`);
    fx = await startFixture({ as: 'stage-weights' });
  }, 180_000);
  afterAll(async () => {
    await fx?.stop();
    await own?.stop();
  });

  const job = async (name: string, request: Record<string, unknown>, over: Record<string, unknown> = {}) => {
    const prefix = `sagemaker/${name}/request/`;
    await fx.operator.s3.send(new PutObjectCommand({ Bucket: fx.deps.bucket, Key: `${prefix}request.json`, Body: JSON.stringify(request) }));
    await fx.operator.s3.send(new PutObjectCommand({ Bucket: fx.deps.bucket, Key: `${prefix}dreambooth_runner.py`, Body: readFileSync(RUNNER_SOURCE_PATH) }));
    return {
      TrainingJobName: name,
      RoleArn: JOB_ROLE,
      AlgorithmSpecification: { TrainingImage: image, TrainingInputMode: 'File', ContainerEntrypoint: CONTAINER_ENTRYPOINT },
      InputDataConfig: [{ ChannelName: 'request', DataSource: { S3DataSource: { S3Uri: `s3://${fx.deps.bucket}/${prefix}` } } }],
      OutputDataConfig: { S3OutputPath: `s3://${fx.deps.bucket}/sagemaker/${name}/output/`, CompressionType: 'NONE' },
      StoppingCondition: { MaxRuntimeInSeconds: 600 },
      ...over,
    };
  };
  // Unique per run: a container of an earlier run may still hold a name.
  const ok = `db-test-ok-${process.pid}`;
  const slow = `db-test-slow-${process.pid}`;
  const logs: string[] = [];
  const opts = (workDir: string, grace = 120) => ({ s3: fx.operator.s3, workDir, log: (l: string) => logs.push(l), stopGraceSeconds: grace });
  const parsed = (text: string) => {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  };
  const failure = (p: Promise<unknown>) => p.then(() => null, (e: Error) => ({ name: e.name, cause: parsed(e.message) }));

  it('uploads model/ uncompressed under <S3OutputPath>/<job>/output/model/ and answers like DescribeTrainingJob, without the trailing slash', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobs-'));
    const out = await runLocalTrainingJob(await job(ok, { mode: "predict", input: { instance_prompt: "x" } }), opts(dir), new AbortController().signal).catch((e) => {
      throw new Error(`${e.message}\n${logs.join("\n")}`);
    });
    expect(out).toMatchObject({ TrainingJobStatus: 'Completed', ModelArtifacts: { S3ModelArtifacts: `s3://${fx.deps.bucket}/sagemaker/${ok}/output/${ok}/output/model` } });
    const head = await fx.operator.s3.send(new HeadObjectCommand({ Bucket: fx.deps.bucket, Key: `sagemaker/${ok}/output/${ok}/output/model/output.zip` }));
    expect(head.ContentLength).toBeGreaterThan(60_000);
    // A second create under the same name is refused, never a second job.
    expect((await failure(runLocalTrainingJob(await job(ok, {}), opts(dir), new AbortController().signal)))?.name).toBe('SageMaker.AmazonSageMakerException');
  }, 120_000);

  it('starts each job with its checkpoint prefix and keeps what it wrote there, even when it fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobs-'));
    const checkpoints = `s3://${fx.deps.bucket}/sagemaker/ckpt-${process.pid}/checkpoints/`;
    // A trainer that counts its runs in a checkpoint file, then fails: as an interrupted job would.
    const count = [
      'import os, sys',
      'p = "/opt/ml/checkpoints/state/runs.txt"',
      'n = int(open(p).read()) if os.path.exists(p) else 0',
      'os.makedirs(os.path.dirname(p), exist_ok=True)',
      'open(p, "w").write(str(n + 1))',
      'sys.exit(3)',
    ].join('\n');
    const run = async (attempt: number) => {
      const name = `db-test-ckpt-${process.pid}-${attempt}`;
      const request = await job(name, {}, {
        AlgorithmSpecification: { TrainingImage: image, ContainerEntrypoint: ['python', '-c', count] },
        CheckpointConfig: { S3Uri: checkpoints, LocalPath: '/opt/ml/checkpoints' },
      });
      return failure(runLocalTrainingJob(request, opts(dir), new AbortController().signal));
    };
    const runs = async () => {
      const body = await fx.operator.s3.send(new GetObjectCommand({ Bucket: fx.deps.bucket, Key: `sagemaker/ckpt-${process.pid}/checkpoints/state/runs.txt` }));
      return body.Body!.transformToString();
    };
    expect((await run(0))?.cause).toMatchObject({ TrainingJobStatus: 'Failed' });
    expect(await runs()).toBe('1');
    // The next job (a new name, the same prefix) finds it.
    await run(1);
    expect(await runs()).toBe('2');
    expect(logs.some((l) => l.includes('restored 1 checkpoint file(s)'))).toBe(true);
  }, 120_000);

  // After a restart of local mode its resumed execution re-enters the job's task: this process
  // has not started the job (a new process), but the job's folder is there.
  it('picks up a job whose container outlived the local mode that started it, and waits for it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobs-'));
    const name = `db-test-outlived-${process.pid}`;
    mkdirSync(join(dir, name, 'model'), { recursive: true });
    // The container as the previous local mode left it: running, writing its model once told to.
    const work = ['import os, time', 'while not os.path.exists("/opt/ml/go"): time.sleep(0.05)', 'open("/opt/ml/model/weights.bin", "w").write("outlived")'].join('\n');
    execFileSync('docker', ['run', '-d', '--rm', '--name', name, '-v', `${join(dir, name)}:/opt/ml`, '--entrypoint', 'python', image, '-c', work]);
    const picked = runLocalTrainingJob(await job(name, {}), opts(dir), new AbortController().signal);
    await waitFor('the pick-up', async () => logs.some((l) => l.includes(`job ${name}: its container outlived`)), 30_000);
    writeFileSync(join(dir, name, 'go'), '');
    expect(await picked).toMatchObject({ TrainingJobStatus: 'Completed' });
    const body = await fx.operator.s3.send(new GetObjectCommand({ Bucket: fx.deps.bucket, Key: `sagemaker/${name}/output/${name}/output/model/weights.bin` }));
    expect(await body.Body!.transformToString()).toBe('outlived');
  }, 120_000);

  it('starts a job again, once, when its container ended with the local mode that started it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobs-'));
    const name = `db-test-died-${process.pid}`;
    // What a killed run leaves: the job's folder, half laid out, and no container.
    mkdirSync(join(dir, name, 'input'), { recursive: true });
    const out = await runLocalTrainingJob(await job(name, { mode: 'predict', input: { instance_prompt: 'x' } }), opts(dir), new AbortController().signal);
    expect(out).toMatchObject({ TrainingJobStatus: 'Completed' });
    expect(logs.filter((l) => l.includes(`job ${name}: its container ended with the local mode`))).toHaveLength(1);
    expect(logs.filter((l) => l.startsWith(`job ${name}: starting`))).toHaveLength(1);
  }, 120_000);

  it('stops the job at MaxRuntimeInSeconds, killing the container after the grace period', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobs-'));
    // A container that ignores SIGTERM: only the kill after the grace period ends it.
    const request = await job(slow, {}, {
      AlgorithmSpecification: { TrainingImage: image, ContainerEntrypoint: ['python', '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'] },
      StoppingCondition: { MaxRuntimeInSeconds: 3 },
    });
    const started = Date.now();
    const err = await failure(runLocalTrainingJob(request, opts(dir, 2), new AbortController().signal));
    expect(err).toEqual({ name: 'States.TaskFailed', cause: expect.objectContaining({ TrainingJobStatus: 'Stopped', SecondaryStatus: 'MaxRuntimeExceeded' }) });
    // 3 s of run time, then SIGTERM ignored for the 2 s grace, then SIGKILL.
    expect(Date.now() - started).toBeGreaterThanOrEqual(5000);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(running(slow)).toBe('');
  }, 120_000);
});

describe("local mode's SageMaker stand-in before any container (a recording docker)", () => {
  // A `docker` that records its arguments and the callback variable it was given, and succeeds.
  const fakeDocker = () => {
    const bin = mkdtempSync(join(tmpdir(), 'fake-docker-'));
    const script = `#!/bin/sh\nprintf '%s\\n' "$@" >> "${bin}/argv"\nprintf '%s' "$${CALLBACK_URL_ENV}" > "${bin}/env"\n`;
    writeFileSync(join(bin, 'docker'), script, { mode: 0o755 });
    return { bin, argv: () => (existsSync(join(bin, 'argv')) ? readFileSync(join(bin, 'argv'), 'utf8') : ''), env: () => readFileSync(join(bin, 'env'), 'utf8') };
  };
  const request = (bin: string, over: Record<string, unknown> = {}) => ({
    TrainingJobName: `db-test-${randomBytes(4).toString('hex')}`,
    RoleArn: JOB_ROLE,
    AlgorithmSpecification: { TrainingImage: 'local/image@sha256:0', ContainerEntrypoint: CONTAINER_ENTRYPOINT },
    OutputDataConfig: { S3OutputPath: 's3://b/sagemaker/x/output/', CompressionType: 'NONE' },
    StoppingCondition: { MaxRuntimeInSeconds: 600 },
    // Node finds the command on the PATH it gives the child.
    Environment: { PATH: `${bin}:${process.env.PATH}`, [CALLBACK_URL_ENV]: 'http://127.0.0.1:9/v1/callbacks/x?secret=s3cr3t' },
    ...over,
  });
  const opts = () => ({ s3: {} as S3Client, workDir: mkdtempSync(join(tmpdir(), 'jobs-')), log: () => {} });
  const refusal = (p: Promise<unknown>) => p.then(() => null, (e: Error) => ({ name: e.name, message: e.message }));

  it('gives the container its environment without a value on the docker command line (the callback URL holds a secret)', async () => {
    const docker = fakeDocker();
    const out = await runLocalTrainingJob(request(docker.bin), opts(), new AbortController().signal);
    expect(out).toMatchObject({ TrainingJobStatus: 'Completed' });
    const argv = docker.argv().split('\n');
    expect(argv.slice(argv.indexOf(CALLBACK_URL_ENV) - 1, argv.indexOf(CALLBACK_URL_ENV) + 1)).toEqual(['-e', CALLBACK_URL_ENV]);
    expect(docker.argv()).not.toContain('s3cr3t');
    expect(docker.env()).toBe('http://127.0.0.1:9/v1/callbacks/x?secret=s3cr3t');
  });

  it.each([
    ['a job name SageMaker refuses', { TrainingJobName: 'db-x_1' }, /trainingJobName/],
    ['no role', { RoleArn: undefined }, /roleArn/],
    ['an environment value over 512 characters', { Environment: { X: 'x'.repeat(513) } }, /environment/],
    ['spot without MaxWaitTimeInSeconds', { EnableManagedSpotTraining: true }, /MaxWaitTimeInSeconds must be set/],
    ['spot with a wait shorter than the run', { EnableManagedSpotTraining: true, StoppingCondition: { MaxRuntimeInSeconds: 600, MaxWaitTimeInSeconds: 60 } }, /at least MaxRuntimeInSeconds/],
    ['spot with a warm pool', { EnableManagedSpotTraining: true, StoppingCondition: { MaxRuntimeInSeconds: 600, MaxWaitTimeInSeconds: 600 }, ResourceConfig: { KeepAlivePeriodInSeconds: 60 } }, /warm pools cannot be used with spot/],
  ])('refuses %s as SageMaker does (SageMaker.AmazonSageMakerException), starting nothing', async (_what, over, message) => {
    const docker = fakeDocker();
    const err = await refusal(runLocalTrainingJob(request(docker.bin, over), opts(), new AbortController().signal));
    expect(err).toEqual({ name: 'SageMaker.AmazonSageMakerException', message: expect.stringMatching(message) });
    expect(docker.argv()).toBe('');
  });
});

describe('a sagemaker trainer without a docker engine', () => {
  let local: Local;
  beforeAll(async () => {
    local = await startLocal({
      build: 'append',
      registry: 'none',
      config: { trainers: { gpu: { backend: 'sagemaker', image: `127.0.0.1:1/none@sha256:${'a'.repeat(64)}` } } },
      env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' },
    });
  }, 90_000);
  afterAll(() => local?.stop());

  it('is refused at submit with a message that says why', async () => {
    const r = await local.api('POST', '/v1/trainings', {
      input: { instance_prompt: 'x' },
      trainer_version: 'gpu',
      model: 'acme/sagemaker',
    });
    expect(r.status).toBe(400);
    expect(r.json.detail).toBe(
      'trainer_version: trainer gpu cannot run here: local mode runs its SageMaker job in a container, and no docker engine is reachable (set DOCKER_HOST)',
    );
  });
});
