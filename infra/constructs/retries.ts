/**
 * The house Retry policies of the state machine's Tasks, shared by the workflow and the
 * SageMaker steps it includes.
 */
import { Duration } from 'aws-cdk-lib';
import { JitterType, type RetryProps } from 'aws-cdk-lib/aws-stepfunctions';
import type { Config } from '#shared/config';
import { StepErrors } from '#shared/steps';

/** Errors worth another try of the same step. */
export const TRANSIENT_RETRY: RetryProps = {
  errors: [
    'Lambda.ServiceException',
    'Lambda.AWSLambdaException',
    'Lambda.SdkClientException',
    'Lambda.TooManyRequestsException',
    StepErrors.Transient,
  ],
  interval: Duration.seconds(2),
  backoffRate: 2,
  maxAttempts: 4,
  maxDelay: Duration.seconds(30),
  jitterStrategy: JitterType.FULL,
};

/**
 * StartBuild refused by the concurrent-build quota. Only that: a failed build is never retried,
 * it would push a second image.
 */
export const BUILD_QUOTA_RETRY: RetryProps = {
  errors: ['CodeBuild.AccountLimitExceededException'],
  interval: Duration.seconds(30),
  backoffRate: 2,
  maxAttempts: 6,
  maxDelay: Duration.seconds(300),
  jitterStrategy: JitterType.FULL,
};

/**
 * The trainer's server refused a run that holds its slot: the queue keeps trainings from
 * meeting a busy server, so this is only the server still answering its previous run's
 * terminal webhook, or something outside this service using it. Retried for about a minute.
 */
export const TRAINER_BUSY_RETRY: RetryProps = {
  errors: [StepErrors.TrainerBusy],
  interval: Duration.seconds(1),
  backoffRate: 2,
  maxAttempts: 6,
  maxDelay: Duration.seconds(30),
  jitterStrategy: JitterType.FULL,
};

/** A webhook's delivery, on the configured schedule (webhooks.retry_*). */
export function webhookRetry(config: Config): RetryProps {
  const { webhooks } = config;
  return {
    errors: [StepErrors.WebhookDeliveryFailed],
    interval: Duration.seconds(webhooks.retry_interval_seconds),
    backoffRate: webhooks.retry_backoff_rate,
    maxAttempts: webhooks.retry_max_attempts,
    maxDelay: Duration.seconds(webhooks.retry_max_delay_seconds),
    jitterStrategy: JitterType.FULL,
  };
}
