/**
 * "Prepare the SageMaker job": lays out the job's `request` channel in S3 — request.json (the
 * training's input, the run id), the runner, and the input files — and returns the job's
 * parameters for the createTrainingJob.sync state, its callback URL among them (for the job's
 * environment: the channel holds nothing secret, as every job's role can read every channel).
 *
 * `instance_data` (every http(s) input) is staged here into the channel rather than fetched by
 * the runner: the download goes through the egress guard (the job's container has no guard and
 * can reach its own credentials endpoint), happens once however often the job is retried, and
 * the GPU instance needs no route to the user's URL at all.
 */
import { isMissingObject } from '#shared/s3-missing';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Transform, type Readable } from 'node:stream';
import { callbackUrl } from '#shared/callback';
import type { Deps } from '#shared/deps';
import { redactUrl, requestStream } from '#shared/http';
import { mustGet } from '#shared/runs';
import type { SageMakerTrainerConfig } from '#shared/trainers/sagemaker/config';
import { CAPACITY_ATTEMPTS, capacityWaitSeconds, jobImage, jobKeys, jobName, RUNNER_FILE, sagemakerTrainer } from '#shared/trainers/sagemaker/training-jobs';
import { StepError, StepErrors, type JobPlan } from '#shared/steps';
import { inputForTrainer } from '#shared/trainers/inputs';
import type { TrainingRecord } from '#shared/training';

export interface PrepareEnv {
  /** The stack's job-name prefix (IAM is scoped to it). */
  jobPrefix: string;
  /** `<account>.dkr.ecr.<region>.amazonaws.com`, or empty to run the configured image as it is. */
  mirrorHost: string;
  /** Each sagemaker trainer's mirror repository in that registry, by trainer. */
  mirrors: Record<string, string>;
  /** The runner's source (runner/dreambooth_runner.py). */
  runner: string;
}

export async function prepareTrainingJob(d: Deps<'s3' | 'secrets'>, env: PrepareEnv, trainingId: string, retry: boolean): Promise<JobPlan> {
  const t = await mustGet(d, trainingId);
  if (t.cancel_requested || t.status === 'canceled') throw new StepError(StepErrors.TrainingCanceled, 'the training was canceled');
  const trainer = sagemakerTrainer(d.config, t.trainer);
  if (!trainer) throw new StepError(StepErrors.TrainerFailed, `trainer ${t.trainer} is not a configured sagemaker trainer`);

  const attempt = (t.job?.attempt ?? 0) + (retry ? 1 : 0);
  if (attempt >= CAPACITY_ATTEMPTS) {
    throw new StepError(
      StepErrors.TrainerFailed,
      `SageMaker had no ${trainer.instance_type} capacity in ${CAPACITY_ATTEMPTS} attempts; try again later, or configure another instance_type for trainer ${t.trainer}`,
    );
  }
  const image = jobImage(t.trainer, trainer, env.mirrorHost, env.mirrors);
  const keys = jobKeys(t.id);
  const { input, files } = await stageInputs(d, t, keys.request);
  // Nothing secret: every job can read every training's channel (the callback URL goes in the job's environment).
  const request = { id: t.run.id, mode: trainer.mode ?? 'auto', input, files };
  await put(d, `${keys.request}request.json`, JSON.stringify(request), 'application/json');
  await put(d, `${keys.request}${RUNNER_FILE}`, env.runner, 'text/x-python');

  const name = jobName(env.jobPrefix, t.id, attempt);
  const updated = await d.store.updateTraining(
    t.id,
    { job: { name, attempt }, 'run.started': true, status: 'processing', started_at: t.started_at ?? d.now().toISOString() },
    { status: ['starting', 'processing'] },
  );
  if (!updated) throw new StepError(StepErrors.TrainingCanceled, 'the training is over');
  if (t.status === 'starting') await d.emit?.(updated, 'start');
  return plan(d.bucket, keys, { name, image, callbackUrl: await callbackUrl(d, t.id) }, trainer, attempt);
}

function plan(
  bucket: string,
  keys: ReturnType<typeof jobKeys>,
  job: { name: string; image: string; callbackUrl: string },
  trainer: SageMakerTrainerConfig,
  attempt: number,
): JobPlan {
  const s3 = (key: string) => `s3://${bucket}/${key}`;
  return {
    name: job.name,
    image: job.image,
    callback_url: job.callbackUrl,
    request_uri: s3(keys.request),
    output_uri: s3(keys.output),
    checkpoint_uri: s3(keys.checkpoints),
    resource_config: {
      InstanceType: trainer.instance_type,
      InstanceCount: 1,
      VolumeSizeInGB: trainer.volume_gb,
      ...(trainer.keep_alive_seconds > 0 ? { KeepAlivePeriodInSeconds: trainer.keep_alive_seconds } : {}),
    },
    stopping_condition: {
      MaxRuntimeInSeconds: trainer.max_runtime_seconds,
      ...(trainer.spot ? { MaxWaitTimeInSeconds: trainer.max_wait_seconds! } : {}),
    },
    spot: trainer.spot,
    retry_wait_seconds: capacityWaitSeconds(attempt),
  };
}

/** Every http(s) input becomes a file of the channel, named in request.json by its relative path. */
async function stageInputs(d: Deps<'s3'>, t: TrainingRecord, prefix: string) {
  // Our own uploads are signed afresh: the training may have waited in the queue for hours.
  const given = await inputForTrainer(d, t.input);
  const input: Record<string, unknown> = { ...given };
  const files: string[] = [];
  for (const [field, value] of Object.entries(given)) {
    if (typeof value !== 'string' || !/^https?:\/\//i.test(value)) continue;
    const base = new URL(value).pathname.split('/').pop()?.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '') || 'file';
    const relative = `inputs/${field}/${base}`;
    const key = `${prefix}${relative}`;
    if (!(await exists(d, key))) await download(d, field, value, key);
    input[field] = `request/${relative}`;
    files.push(field);
  }
  return { input, files };
}

async function download(d: Deps<'s3'>, field: string, url: string, key: string): Promise<void> {
  const max = d.config.limits.archive_max_bytes;
  let res;
  try {
    res = await requestStream(url, { method: 'GET', timeoutMs: 60_000, allow: d.config.egress.allow, maxRedirects: 3 });
  } catch (e) {
    const err = e as Error & { code?: string };
    const name = err.code === 'EGRESS_REFUSED' ? StepErrors.TrainerFailed : StepErrors.Transient;
    throw new StepError(name, `could not download input.${field} ${redactUrl(url)}: ${err.message}`);
  }
  if (res.status !== 200) {
    res.stream.resume();
    const name = res.status >= 500 || res.status === 429 ? StepErrors.Transient : StepErrors.TrainerFailed;
    throw new StepError(name, `input.${field} ${redactUrl(url)} answered HTTP ${res.status}`);
  }
  let counted = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      counted += chunk.length;
      if (counted > max) return done(new StepError(StepErrors.TrainerFailed, `input.${field} exceeds limits.archive_max_bytes (${max})`));
      done(null, chunk);
    },
  });
  const body = (res.stream as Readable).pipe(counter);
  res.stream.on('error', (e) => counter.destroy(e));
  const upload = new Upload({ client: d.s3, params: { Bucket: d.bucket, Key: key, Body: body }, partSize: 16 * 1024 * 1024, queueSize: 4, leavePartsOnError: false });
  try {
    await upload.done();
  } catch (e) {
    if (e instanceof StepError) throw e;
    throw new StepError(StepErrors.Transient, `staging input.${field} failed: ${(e as Error).message}`);
  }
}

async function exists(d: Deps<'s3'>, key: string): Promise<boolean> {
  try {
    await d.s3.send(new HeadObjectCommand({ Bucket: d.bucket, Key: key }));
    return true;
  } catch (e) {
    if (isMissingObject(e)) return false;
    throw e;
  }
}

const put = (d: Deps<'s3'>, key: string, body: string, type: string) =>
  d.s3.send(new PutObjectCommand({ Bucket: d.bucket, Key: key, Body: body, ContentType: type }));
