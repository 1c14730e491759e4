/**
 * Environment variables the Lambdas read. The CDK constructs set them on AWS; local mode sets
 * the same ones. SDK endpoints come from the SDK's own `AWS_ENDPOINT_URL_<SERVICE>` variables.
 */
export const ENV = {
  /** DynamoDB table of trainings, versions and idempotency keys. */
  table: 'TABLE_NAME',
  /** S3 bucket for staged weights and uploads. */
  bucket: 'BUCKET_NAME',
  /** ARN of the training state machine. */
  stateMachineArn: 'STATE_MACHINE_ARN',
  /** ARN of the prediction state machine. */
  predictionStateMachineArn: 'PREDICTION_STATE_MACHINE_ARN',
  /** Public base URL of the API (no trailing slash); callback and upload URLs are built on it. */
  publicUrl: 'PUBLIC_URL',
  /** Secrets Manager secret ids. */
  apiTokensSecret: 'API_TOKENS_SECRET',
  webhookSecret: 'WEBHOOK_SECRET',
  callbackKeySecret: 'CALLBACK_KEY_SECRET',
  /** Name or ARN of the notify function (the API invokes it when a training is canceled). */
  notifyFunction: 'NOTIFY_FUNCTION',
  /** Registry host the model images are pushed to (ECR: <account>.dkr.ecr.<region>.amazonaws.com). */
  registryHost: 'REGISTRY_HOST',
  /** The demo trainer's Lambda on AWS (local mode serves it over HTTP instead). */
  demoTrainerFunction: 'DEMO_TRAINER_FUNCTION',
  /** Prefix of the stack's SageMaker job names (its IAM is scoped to it). */
  jobPrefix: 'SAGEMAKER_JOB_PREFIX',
  /** Registry host of the trainer images' mirror (ECR); empty runs the configured image as it is. */
  trainerImageHost: 'SAGEMAKER_IMAGE_HOST',
  /** JSON: each sagemaker trainer's mirror repository name (CloudFormation names them), by trainer. */
  trainerMirrors: 'SAGEMAKER_MIRRORS',
  /** Prefix of the stack's SageMaker endpoint, model, endpoint configuration and alarm names (IAM is scoped to it). */
  endpointPrefix: 'SAGEMAKER_ENDPOINT_PREFIX',
  /** The role every prediction endpoint runs with. */
  endpointRole: 'SAGEMAKER_ENDPOINT_ROLE_ARN',
  /** SNS topics asynchronous inference notifies when a request succeeded or failed. */
  predictionSuccessTopic: 'PREDICTION_SUCCESS_TOPIC_ARN',
  predictionErrorTopic: 'PREDICTION_ERROR_TOPIC_ARN',
  /** `s3://<bucket>/predictions/`: where endpoints write their responses (`<prediction id>.out`). */
  predictionOutputPath: 'PREDICTION_OUTPUT_PATH',
  /** The CodeBuild project making templates' SageMaker variants in ECR; absent where the registry is not ECR. */
  templateVariantProject: 'TEMPLATE_VARIANT_PROJECT',
  /** `<ECR host>/<prefix>/templates`: the templates' repositories, beside the models'. */
  templateRepositoryPrefix: 'TEMPLATE_REPOSITORY_PREFIX',
  /** The SageMaker runner's source, baked into the prepare function's bundle. */
  runnerSource: 'DREAMBOOTH_RUNNER',
} as const;

export function requireEnv(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set`);
  return v;
}
