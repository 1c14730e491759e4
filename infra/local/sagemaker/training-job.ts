/**
 * Local mode's stand-in for `createTrainingJob.sync` (CreateTrainingJob, then DescribeTrainingJob
 * until the end, StopTrainingJob when the execution stops): it runs the job's container on the
 * local docker engine as SageMaker does —
 * - the image, with ContainerEntrypoint/ContainerArguments (else SageMaker's `<image> train`);
 * - `/opt/ml` laid out as on SageMaker: each channel's S3 prefix under `input/data/<channel>/`,
 *   `input/config/*.json`, `model/`, `output/`; the job's Environment;
 * - `model/` uploaded as is (CompressionType NONE) to `<S3OutputPath>/<job>/output/model/`,
 *   answered as S3ModelArtifacts without the trailing slash (the stricter case);
 * - `output/failure` as FailureReason when the container exits non-zero;
 * - stop (the execution stopped, or MaxRuntimeInSeconds reached) = SIGTERM, then SIGKILL after
 *   the grace period (`docker stop --time`, 120 s as on SageMaker).
 * `--network host`: the runner reaches local mode's callback route on 127.0.0.1, as a job
 * reaches the public API.
 */
import { spawn, execFile } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { RegistryClient } from '#shared/oci/registry';
import { mirrorImage } from '../../lambdas/mirror-image/core.ts';
import { JOB_NAME_PATTERN, SAGEMAKER_TASK_ERRORS } from '#shared/sagemaker';
import { StateError } from './aws/errors.ts';

export interface LocalSageMakerOptions {
  s3: S3Client;
  /** Where each job's `/opt/ml` is laid out. */
  workDir: string;
  log: (line: string) => void;
  /** Seconds between SIGTERM and SIGKILL. @default 120 (SageMaker's) */
  stopGraceSeconds?: number;
}

interface CreateTrainingJob {
  TrainingJobName: string;
  RoleArn?: string;
  AlgorithmSpecification: { TrainingImage: string; ContainerEntrypoint?: string[]; ContainerArguments?: string[] };
  InputDataConfig?: { ChannelName: string; DataSource: { S3DataSource: { S3Uri: string } } }[];
  OutputDataConfig: { S3OutputPath: string; CompressionType?: string };
  StoppingCondition?: { MaxRuntimeInSeconds?: number; MaxWaitTimeInSeconds?: number };
  EnableManagedSpotTraining?: boolean;
  Environment?: Record<string, string>;
  ResourceConfig?: { KeepAlivePeriodInSeconds?: number } & Record<string, unknown>;
  CheckpointConfig?: { S3Uri: string; LocalPath?: string };
}

/** The error Step Functions reports for a `.sync` job that failed or stopped: the job's description is the Cause. */
export class TrainingJobFailed extends StateError {
  constructor(description: Record<string, unknown>) {
    super(SAGEMAKER_TASK_ERRORS.jobFailed, JSON.stringify(description));
  }
}

/** A CreateTrainingJob call SageMaker refuses, under the name the integration reports it with. */
const refused = (message: string) => new StateError(SAGEMAKER_TASK_ERRORS.refused, message);

/**
 * What CreateTrainingJob refuses with a ValidationException among what the state machine
 * sends (CreateTrainingJob's API reference; warm pools' considerations for spot): refused
 * here too, so local mode is never looser than SageMaker.
 */
function validationErrors(job: CreateTrainingJob): string[] {
  const errors: string[] = [];
  const constraint = (value: unknown, member: string, rule: string) => errors.push(`Value '${String(value)}' at '${member}' failed to satisfy constraint: ${rule}`);
  if (!JOB_NAME_PATTERN.test(job.TrainingJobName ?? '')) constraint(job.TrainingJobName, 'trainingJobName', `Member must satisfy regular expression pattern: ${JOB_NAME_PATTERN.source}`);
  if (!/^arn:aws[a-z-]*:iam::\d{12}:role\/?[\w+=,.@/-]+$/.test(job.RoleArn ?? '')) constraint(job.RoleArn, 'roleArn', 'Member must be the ARN of an IAM role');
  const environment = Object.entries(job.Environment ?? {});
  if (environment.length > 100) constraint(`${environment.length} entries`, 'environment', 'Member must have at most 100 entries');
  for (const [key, value] of environment) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]{0,511}$/.test(key)) constraint(key, 'environment', 'Map keys must satisfy regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]* (at most 512)');
    if (typeof value !== 'string' || value.length > 512) constraint(`${key}=…`, 'environment', 'Map value must be a string of at most 512 characters');
  }
  const stop = job.StoppingCondition ?? {};
  if (job.EnableManagedSpotTraining) {
    if (!(stop.MaxWaitTimeInSeconds !== undefined && stop.MaxWaitTimeInSeconds >= (stop.MaxRuntimeInSeconds ?? 0))) {
      errors.push('MaxWaitTimeInSeconds must be set, and at least MaxRuntimeInSeconds, for managed spot training');
    }
    if (job.ResourceConfig?.KeepAlivePeriodInSeconds) errors.push('warm pools cannot be used with spot instances');
  }
  return errors;
}

const started = new Set<string>();
const s3Parts = (uri: string) => {
  const m = uri.match(/^s3:\/\/([^/]+)\/?(.*)$/);
  if (!m) throw new Error(`not an s3:// URI: ${uri}`);
  return { bucket: m[1]!, key: m[2]! };
};

export async function runLocalTrainingJob(input: unknown, opts: LocalSageMakerOptions, signal: AbortSignal): Promise<Record<string, unknown>> {
  const job = input as CreateTrainingJob;
  const invalid = validationErrors(job);
  if (invalid.length) throw refused(`${invalid.length} validation error${invalid.length > 1 ? 's' : ''} detected: ${invalid.join('; ')}`);
  const name = job.TrainingJobName;
  const dir = join(opts.workDir, name);
  // Names are unique per account and region: a retried create is refused, never a second job.
  if (started.has(name) || existsSync(dir)) {
    throw refused(`Training job names must be unique within an AWS account and region, and a training job with this name already exists (${name})`);
  }
  started.add(name);
  const t0 = Date.now();
  await layOut(job, dir, opts.s3, opts);
  opts.log(`job ${name}: starting ${job.AlgorithmSpecification.TrainingImage}`);
  const { code, stopReason } = await runContainer(job, dir, opts, signal);
  // SageMaker syncs the checkpoint folder to S3 while the job runs; here once, when the
  // container has ended, whatever its outcome (a stopped or failed job keeps what it wrote).
  if (job.CheckpointConfig) await uploadFolder(join(dir, 'checkpoints'), withSlash(job.CheckpointConfig.S3Uri), opts.s3);
  const seconds = Math.round((Date.now() - t0) / 1000);
  const base = {
    TrainingJobName: name,
    TrainingJobArn: `arn:aws:sagemaker:us-east-1:000000000000:training-job/${name}`,
    AlgorithmSpecification: job.AlgorithmSpecification,
    OutputDataConfig: job.OutputDataConfig,
    TrainingTimeInSeconds: seconds,
    BillableTimeInSeconds: seconds,
  };
  if (stopReason) throw new TrainingJobFailed({ ...base, TrainingJobStatus: 'Stopped', SecondaryStatus: stopReason });
  if (code !== 0) {
    const failure = (await readFile(join(dir, 'output', 'failure'), 'utf8').catch(() => '')).trim();
    const reason = `AlgorithmError: ${failure || `the container exited with status ${code}`}`;
    throw new TrainingJobFailed({ ...base, TrainingJobStatus: 'Failed', SecondaryStatus: 'Failed', FailureReason: reason.slice(0, 1024) });
  }
  const artifacts = `${job.OutputDataConfig.S3OutputPath.replace(/\/+$/, '')}/${name}/output/model`;
  await uploadFolder(join(dir, 'model'), withSlash(artifacts), opts.s3);
  opts.log(`job ${name}: completed in ${seconds} s`);
  await rm(join(dir, 'input', 'data'), { recursive: true, force: true });
  return { ...base, TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed', ModelArtifacts: { S3ModelArtifacts: artifacts } };
}

async function layOut(job: CreateTrainingJob, dir: string, s3: S3Client, opts: Pick<LocalSageMakerOptions, 'log'>): Promise<void> {
  for (const sub of ['input/config', 'input/data', 'model', 'output', 'checkpoints']) await mkdir(join(dir, sub), { recursive: true });
  const channels = job.InputDataConfig ?? [];
  await writeFile(join(dir, 'input', 'config', 'hyperparameters.json'), '{}');
  await writeFile(join(dir, 'input', 'config', 'resourceconfig.json'), JSON.stringify({ current_host: 'algo-1', hosts: ['algo-1'] }));
  await writeFile(
    join(dir, 'input', 'config', 'inputdataconfig.json'),
    JSON.stringify(Object.fromEntries(channels.map((c) => [c.ChannelName, { TrainingInputMode: 'File', S3DistributionType: 'FullyReplicated' }]))),
  );
  for (const channel of channels) {
    const count = await downloadPrefix(s3, channel.DataSource.S3DataSource.S3Uri, join(dir, 'input', 'data', channel.ChannelName)).catch((e: Error) => {
      // The job's role could not read its data: SageMaker fails the job, it does not refuse the create.
      throw new TrainingJobFailed({ TrainingJobName: job.TrainingJobName, TrainingJobStatus: 'Failed', FailureReason: `ClientError: Data download failed: ${e.message}` });
    });
    // SageMaker refuses a channel whose prefix holds no object.
    if (count === 0) throw new TrainingJobFailed({ TrainingJobName: job.TrainingJobName, TrainingJobStatus: 'Failed', FailureReason: `ClientError: no S3 objects found under ${channel.DataSource.S3DataSource.S3Uri}` });
  }
  // A job starts with what its checkpoint prefix holds (a resumed spot job, a retried one).
  if (job.CheckpointConfig) {
    const restored = await downloadPrefix(s3, withSlash(job.CheckpointConfig.S3Uri), join(dir, 'checkpoints'));
    if (restored) opts.log(`job ${job.TrainingJobName}: restored ${restored} checkpoint file(s)`);
  }
}

/** Every object under the prefix into `folder`, by relative key; answers how many. */
async function downloadPrefix(s3: S3Client, uri: string, folder: string): Promise<number> {
  const { bucket, key: prefix } = s3Parts(uri);
  let token: string | undefined;
  let count = 0;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const object of page.Contents ?? []) {
      const target = join(folder, object.Key!.slice(prefix.length).replace(/^\/+/, ''));
      await mkdir(dirname(target), { recursive: true });
      const body = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: object.Key! }));
      await pipeline(body.Body as Readable, createWriteStream(target));
      count++;
    }
    token = page.NextContinuationToken;
  } while (token);
  return count;
}

function runContainer(job: CreateTrainingJob, dir: string, opts: LocalSageMakerOptions, signal: AbortSignal): Promise<{ code: number; stopReason?: string }> {
  const name = job.TrainingJobName;
  const spec = job.AlgorithmSpecification;
  // `-e NAME` alone: docker takes the value from its own environment, so no value (the callback
  // URL holds a secret) appears on a command line.
  const env = Object.keys(job.Environment ?? {}).flatMap((k) => ['-e', k]);
  const [entry, ...entryArgs] = spec.ContainerEntrypoint ?? [];
  // The checkpoint folder is /opt/ml/checkpoints unless the job names another path.
  const local = job.CheckpointConfig?.LocalPath;
  const checkpoints = local && local !== '/opt/ml/checkpoints' ? ['-v', `${join(dir, 'checkpoints')}:${local}`] : [];
  const args = [
    'run', '--rm', '--name', name, '--network', 'host', '-v', `${dir}:/opt/ml`, ...checkpoints, ...env,
    ...(entry ? ['--entrypoint', entry] : []),
    spec.TrainingImage,
    ...entryArgs,
    ...(spec.ContainerArguments ?? (entry ? [] : ['train'])),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('docker', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...job.Environment } });
    let stopReason: string | undefined;
    let exited = false;
    const stop = (reason: string) => {
      if (stopReason) return;
      stopReason = reason;
      opts.log(`job ${name}: stopping (${reason})`);
      // `docker stop` fails while the container is still being created (an image pull): try again until it ends.
      const attempt = () => execFile('docker', ['stop', '--time', String(opts.stopGraceSeconds ?? 120), name], () => {
        if (!exited) setTimeout(attempt, 1000).unref();
      });
      attempt();
    };
    const max = job.StoppingCondition?.MaxRuntimeInSeconds;
    const timer = max ? setTimeout(() => stop('MaxRuntimeExceeded'), max * 1000) : undefined;
    const onAbort = () => stop('Stopped');
    signal.addEventListener('abort', onAbort, { once: true });
    let pending = '';
    const lines = (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const line of parts) if (line.trim()) opts.log(`job ${name}: ${line}`);
    };
    child.stdout.on('data', lines);
    child.stderr.on('data', lines);
    child.on('error', reject);
    child.on('close', (code) => {
      exited = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve({ code: code ?? 1, stopReason });
    });
  });
}

const withSlash = (uri: string) => (uri.endsWith('/') ? uri : `${uri}/`);

/** Every file under `folder` to `<uri><relative path>`. */
async function uploadFolder(folder: string, uri: string, s3: S3Client): Promise<void> {
  const { bucket, key: prefix } = s3Parts(uri);
  for (const file of await walk(folder)) {
    const upload = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: `${prefix}${relative(folder, file)}`, Body: createReadStream(file) },
      partSize: 16 * 1024 * 1024,
      queueSize: 4,
    });
    await upload.done();
  }
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

/**
 * The mirror's CodeBuild step in local mode: the same copy (lambdas/mirror-image) from the
 * configured registry into local mode's registry, which stands for ECR; without a registry
 * (an OCI layout on disk) there is nothing to copy into and the job runs the configured image.
 */
export async function runLocalMirror(input: unknown, registryHost: string | null, log: (line: string) => void): Promise<unknown> {
  const env = Object.fromEntries(((input as { EnvironmentVariablesOverride?: { Name: string; Value: string }[] }).EnvironmentVariablesOverride ?? []).map((v) => [v.Name, v.Value]));
  const id = `local:mirror-${Date.now().toString(36)}`;
  if (!registryHost) return { Build: { Id: id, BuildStatus: 'SUCCEEDED' } };
  const target = `${registryHost}/${env.TARGET_REPOSITORY!.split('/').slice(1).join('/')}`;
  const client = (repository: string) => {
    const [host, ...rest] = repository.split('/');
    return { store: new RegistryClient({ baseUrl: `http://${host}` }), repo: rest.join('/') };
  };
  try {
    await mirrorImage(env.SOURCE_IMAGE!, target, client, (l) => log(`mirror: ${l}`));
    return { Build: { Id: id, BuildStatus: 'SUCCEEDED' } };
  } catch (e) {
    throw new StateError('States.TaskFailed', JSON.stringify({ Build: { Id: id, BuildStatus: 'FAILED', Phases: [{ PhaseType: 'BUILD', PhaseStatus: 'FAILED' }] }, log_tail: `mirror failed: ${(e as Error).message}` }));
  }
}

/**
 * ECR DescribeImages of a trainer's mirror in local mode: the local registry stands for ECR.
 * Without one (an OCI layout on disk) nothing is in "ECR", and the mirror that follows is a no-op.
 */
export async function describeLocalImages(input: unknown, registryHost: string | null): Promise<unknown> {
  const { RepositoryName, ImageIds } = input as { RepositoryName: string; ImageIds: { ImageDigest: string }[] };
  const notFound = () => new StateError('Ecr.ImageNotFoundException', `The image with imageId {imageDigest:'${ImageIds[0]?.ImageDigest}'} does not exist within the repository with name '${RepositoryName}'`);
  if (!registryHost) throw notFound();
  const store = new RegistryClient({ baseUrl: `http://${registryHost}` });
  const imageDetails = [];
  for (const { ImageDigest } of ImageIds) {
    const found = await store.headManifest(RepositoryName, ImageDigest);
    if (!found) throw notFound();
    imageDetails.push({ repositoryName: RepositoryName, imageDigest: found.digest, imageManifestMediaType: found.mediaType });
  }
  return { ImageDetails: imageDetails };
}

/** Whether a docker engine answers (DOCKER_HOST or the default socket). */
export async function dockerReachable(): Promise<boolean> {
  if (!process.env.DOCKER_HOST && !existsSync('/var/run/docker.sock')) return false;
  try {
    await promisify(execFile)('docker', ['version', '--format', '{{.Server.Version}}'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}
