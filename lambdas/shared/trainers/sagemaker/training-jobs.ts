/**
 * Facts about a training's SageMaker job, shared by the construct (IAM, state), the prepare
 * step, stage-weights and local mode's stand-in. One job per training; everything under one
 * key prefix of the data bucket: the `request` channel (request.json, the runner, staged input
 * files), the job's output, its checkpoints.
 */
import { redactUrl } from '../../http.ts';
import type { SageMakerTrainerConfig } from './config.ts';

export const SAGEMAKER_PREFIX = 'sagemaker/';
/** The runner's file name in the request channel. */
export const RUNNER_FILE = 'dreambooth_runner.py';
export const REQUEST_CHANNEL = 'request';
/** The job's entrypoint: the runner, with the interpreter every Cog image carries. */
export const CONTAINER_ENTRYPOINT = ['python', `/opt/ml/input/data/${REQUEST_CHANNEL}/${RUNNER_FILE}`];
export const CHECKPOINT_LOCAL_PATH = '/opt/ml/checkpoints';
/**
 * The job's environment variable that holds its training's callback URL (with the training's
 * callback secret). Never the request channel: every job's role reads every training's channel,
 * and another training's secret would let a job write that training's logs.
 */
export const CALLBACK_URL_ENV = 'DREAMBOOTH_CALLBACK_URL';
/** CreateTrainingJob's TrainingJobName. */
export const JOB_NAME_PATTERN = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;

export function jobKeys(trainingId: string) {
  const root = `${SAGEMAKER_PREFIX}${trainingId}/`;
  return { root, request: `${root}${REQUEST_CHANNEL}/`, output: `${root}output/`, checkpoints: `${root}checkpoints/` };
}

/**
 * Job names are unique per account and region and at most 63 characters: the stack's prefix,
 * the training id, and an attempt number after a capacity retry (a failed job's name cannot be
 * reused). A retried create under the same name is refused, so it never starts a second job.
 */
export function jobName(prefix: string, trainingId: string, attempt: number): string {
  const name = attempt > 0 ? `${prefix}${trainingId}-${attempt}` : `${prefix}${trainingId}`;
  if (!JOB_NAME_PATTERN.test(name)) throw new Error(`not a valid SageMaker job name: ${name}`);
  return name;
}

/**
 * The image the job runs: the trainer's mirror in ECR (`mirrors` names each trainer's
 * repository: CloudFormation names them) by the same digest, or the configured image itself
 * without a mirror host.
 */
export function jobImage(trainerName: string, trainer: SageMakerTrainerConfig, mirrorHost: string, mirrors: Record<string, string>): string {
  if (!mirrorHost) return trainer.image;
  const repository = mirrors[trainerName];
  if (!repository) throw new Error(`no mirror repository is deployed for sagemaker trainer ${trainerName}`);
  return `${mirrorHost}/${repository}@${trainer.image.split('@')[1]}`;
}

type Trainers = { trainers: Record<string, { backend: string }> };
const isSageMaker = (t: { backend: string } | undefined): t is SageMakerTrainerConfig => t?.backend === 'sagemaker';

/** The configuration's sagemaker trainers, by name. */
export function sagemakerTrainers(config: Trainers): [string, SageMakerTrainerConfig][] {
  return Object.entries(config.trainers).filter((e): e is [string, SageMakerTrainerConfig] => isSageMaker(e[1]));
}

/** The configured trainer of that name if it is a sagemaker trainer. */
export function sagemakerTrainer(config: Trainers, name: string): SageMakerTrainerConfig | undefined {
  const t = Object.hasOwn(config.trainers, name) ? config.trainers[name] : undefined;
  return isSageMaker(t) ? t : undefined;
}

/** Where SageMaker uploads /opt/ml/model (`<job>/output/model/`), and what the runner writes there. */
const MODEL_FOLDER = 'model';
const RUNNER_ARCHIVE = 'output.zip';

/**
 * S3ModelArtifacts of uncompressed output names the model folder's prefix, with or without a
 * trailing slash (the API promises none; SageMaker's Python SDK adds one "if necessary"), or an
 * object when the folder held a single artifact. The prefix gets exactly one slash, then the
 * runner's archive; an object's key stays as it is.
 */
function runnerArchiveKey(path: string): string {
  const folder = path.replace(/\/+$/, '');
  const isPrefix = path !== folder || folder.split('/').pop() === MODEL_FOLDER;
  return isPrefix ? `${folder}/${RUNNER_ARCHIVE}` : path;
}

/**
 * The archive a training's job left in our bucket (`CompressionType: NONE`, so as the runner
 * wrote it), from the job's S3ModelArtifacts. Only this training's own job output is accepted.
 */
export function jobOutputKey(trainingId: string, bucket: string, url: string): { key: string } | { refused: string } {
  const { output } = jobKeys(trainingId);
  const m = url.match(/^s3:\/\/([^/]+)\/(.+)$/);
  const key = m ? runnerArchiveKey(m[2]!) : '';
  if (!m || m[1] !== bucket || !key.startsWith(output) || key.includes('..')) {
    return { refused: `the SageMaker job's output ${redactUrl(url)} is not this training's job output` };
  }
  return { key };
}

/** Why a job's output archive is missing. */
export const missingJobOutput = (key: string) => `the SageMaker job left no ${key.split('/').pop()} (the runner writes ${MODEL_FOLDER}/${RUNNER_ARCHIVE})`;

/**
 * The errors `createTrainingJob.sync` ends with; the state machine's Retry and local mode's
 * stand-in use these names. A job that ran and failed or stopped: `States.TaskFailed`, the job's
 * description (DescribeTrainingJob) as the Cause. A refused CreateTrainingJob call: the
 * optimized integration reports the service's exception names — the quota as
 * `SageMaker.ResourceLimitExceededException`, and every error the SageMaker API does not model
 * (ThrottlingException, InternalFailure, ServiceUnavailable, ValidationException) as
 * `SageMaker.AmazonSageMakerException`, the error code then only in the Cause. The Step
 * Functions guide's training-job example ("Create and manage Amazon SageMaker AI jobs with Step
 * Functions") retries exactly these two names; a `SageMaker.ThrottlingException` never arrives.
 */
export const SAGEMAKER_TASK_ERRORS = {
  jobFailed: 'States.TaskFailed',
  refused: 'SageMaker.AmazonSageMakerException',
  quota: 'SageMaker.ResourceLimitExceededException',
} as const;

/** Capacity retries: attempts in all, and the wait before each new attempt (full jitter). */
export const CAPACITY_ATTEMPTS = 4;
export function capacityWaitSeconds(attempt: number, random = Math.random): number {
  return Math.max(10, Math.round(random() * Math.min(3600, 120 * 2 ** attempt)));
}

interface JobDescription {
  TrainingJobName?: string;
  TrainingJobStatus?: string;
  SecondaryStatus?: string;
  FailureReason?: string;
}

/**
 * The error a user reads when a training's SageMaker job could not run or did not finish:
 * `createTrainingJob.sync` fails with the job's description as its cause (or, for a refused
 * create, the API's error). Null when the error is not the job's.
 */
export function jobFailureMessage(error: { Error?: string; Cause?: string }, trainerName: string, trainer?: SageMakerTrainerConfig): string | null {
  const text = `${error.Error ?? ''} ${error.Cause ?? ''}`;
  const instance = trainer?.instance_type ?? 'the instance type';
  if (/ResourceLimitExceeded/.test(text)) {
    const quota = `"${instance} for ${trainer?.spot ? 'spot training job' : 'training job'} usage"`;
    return (
      `SageMaker refused the job: the account's quota ${quota} is too low (new accounts have 0 for GPU instance types). ` +
      `Request an increase in the Service Quotas console (AWS services → Amazon SageMaker → ${quota}) in this region, ` +
      `or configure another instance_type for trainer ${trainerName}.`
    );
  }
  let job: JobDescription;
  try {
    job = JSON.parse(error.Cause ?? '') as JobDescription;
  } catch {
    return null;
  }
  if (!job || typeof job !== 'object' || !job.TrainingJobStatus) return null;
  const name = `the SageMaker training job ${job.TrainingJobName ?? ''}`.trimEnd();
  if (job.SecondaryStatus === 'MaxRuntimeExceeded') {
    return `${name} reached max_runtime_seconds (${trainer?.max_runtime_seconds ?? '?'} s) and was stopped; raise max_runtime_seconds of trainer ${trainerName}`;
  }
  if (job.SecondaryStatus === 'MaxWaitTimeExceeded') {
    return `${name} waited for spot capacity (or was interrupted) past max_wait_seconds (${trainer?.max_wait_seconds ?? '?'} s); raise max_wait_seconds or turn spot off for trainer ${trainerName}`;
  }
  if (job.SecondaryStatus === 'Interrupted') return `${name} lost its spot instance and could not resume; try again, or turn spot off for trainer ${trainerName}`;
  if (job.TrainingJobStatus === 'Stopped') return `${name} was stopped`;
  const reason = (job.FailureReason ?? 'no reason given').replace(/^AlgorithmError:\s*/, '');
  if (/CapacityError|InsufficientCapacity/.test(reason)) return `${name} found no ${instance} capacity: ${reason}`;
  return `${name} failed: ${reason}`;
}
