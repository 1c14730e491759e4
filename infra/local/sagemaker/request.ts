/**
 * CreateTrainingJob as local mode takes it: the request the state machine sends, what SageMaker
 * would refuse in it, and the error a job that failed or stopped ends its task with.
 */
import { JOB_NAME_PATTERN, SAGEMAKER_TASK_ERRORS } from '#shared/trainers/sagemaker/training-jobs';
import { StateError } from '../errors.ts';

export interface CreateTrainingJob {
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
export const refused = (message: string) => new StateError(SAGEMAKER_TASK_ERRORS.refused, message);

/**
 * What CreateTrainingJob refuses with a ValidationException among what the state machine
 * sends (CreateTrainingJob's API reference; warm pools' considerations for spot): refused
 * here too, so local mode is never looser than SageMaker.
 */
export function validationErrors(job: CreateTrainingJob): string[] {
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
