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
 *   the grace period (`docker stop --time`, 120 s as on SageMaker) (./container.ts);
 * - after a restart of local mode (its resumed execution re-enters this task), the job is picked
 *   up: a container that outlived the local mode that started it is waited for; one that is gone
 *   is started again, once (the job's folder is where a previous start is seen).
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { trainingJobArn } from '../names.ts';
import { layOut, uploadFolder, withSlash } from './channels.ts';
import { containerRunning, runContainer, waitForContainer } from './container.ts';
import { refused, TrainingJobFailed, validationErrors, type CreateTrainingJob } from './request.ts';

export interface LocalSageMakerOptions {
  s3: S3Client;
  /** Where each job's `/opt/ml` is laid out. */
  workDir: string;
  log: (line: string) => void;
  /** Seconds between SIGTERM and SIGKILL. @default 120 (SageMaker's) */
  stopGraceSeconds?: number;
}

const started = new Set<string>();

export async function runLocalTrainingJob(input: unknown, opts: LocalSageMakerOptions, signal: AbortSignal): Promise<Record<string, unknown>> {
  const job = input as CreateTrainingJob;
  const invalid = validationErrors(job);
  if (invalid.length) throw refused(`${invalid.length} validation error${invalid.length > 1 ? 's' : ''} detected: ${invalid.join('; ')}`);
  const name = job.TrainingJobName;
  const dir = join(opts.workDir, name);
  // Names are unique per account and region: a retried create is refused, never a second job.
  if (started.has(name)) {
    throw refused(`Training job names must be unique within an AWS account and region, and a training job with this name already exists (${name})`);
  }
  started.add(name);
  const t0 = Date.now();
  const { code, stopReason } = (existsSync(dir) && (await pickUp(job, opts, signal))) || (await start(job, dir, opts, signal));
  // SageMaker syncs the checkpoint folder to S3 while the job runs; here once, when the
  // container has ended, whatever its outcome (a stopped or failed job keeps what it wrote).
  if (job.CheckpointConfig) await uploadFolder(join(dir, 'checkpoints'), withSlash(job.CheckpointConfig.S3Uri), opts.s3);
  const seconds = Math.round((Date.now() - t0) / 1000);
  const base = {
    TrainingJobName: name,
    TrainingJobArn: trainingJobArn(name),
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

type Ended = { code: number; stopReason?: string };

async function start(job: CreateTrainingJob, dir: string, opts: LocalSageMakerOptions, signal: AbortSignal): Promise<Ended> {
  if (existsSync(dir)) {
    opts.log(`job ${job.TrainingJobName}: its container ended with the local mode that started it: starting it again`);
    await rm(dir, { recursive: true, force: true });
  }
  await layOut(job, dir, opts.s3, opts);
  opts.log(`job ${job.TrainingJobName}: starting ${job.AlgorithmSpecification.TrainingImage}`);
  return runContainer(job, dir, opts, signal);
}

/** A job a previous local mode started: its container, still running, waited for; null when it is gone. */
async function pickUp(job: CreateTrainingJob, opts: LocalSageMakerOptions, signal: AbortSignal): Promise<Ended | null> {
  const name = job.TrainingJobName;
  if (!(await containerRunning(name))) return null;
  opts.log(`job ${name}: its container outlived the local mode that started it: waiting for it`);
  // It may end between the look and the wait (and --rm removes it): then it starts again.
  return waitForContainer(name, opts, signal, job.StoppingCondition?.MaxRuntimeInSeconds).catch(() => null);
}
