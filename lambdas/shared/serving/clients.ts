/**
 * The serving functions' SDK clients, created once per container like ../aws.ts's. Local mode
 * reaches its stand-ins through AWS_ENDPOINT_URL_SAGEMAKER, _SAGEMAKER_RUNTIME,
 * _APPLICATION_AUTO_SCALING and _CLOUDWATCH.
 */
import { ApplicationAutoScalingClient } from '@aws-sdk/client-application-auto-scaling';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { memo } from '../aws.ts';
import { ENV, requireEnv } from '../env.ts';

export const sagemaker = /* @__PURE__ */ memo(() => new SageMakerClient({}));
export const sagemakerRuntime = /* @__PURE__ */ memo(() => new SageMakerRuntimeClient({}));
export const autoscaling = /* @__PURE__ */ memo(() => new ApplicationAutoScalingClient({}));
export const cloudwatch = /* @__PURE__ */ memo(() => new CloudWatchClient({}));

/** Where the serving functions' deployment-wide values come from (their `sagemaker-endpoints` need). */
export interface ServingEnv {
  endpointPrefix: string;
  endpointRoleArn: string;
  successTopicArn: string;
  errorTopicArn: string;
  /** `s3://<bucket>/predictions/`. */
  outputPath: string;
  /** The template variant project and the templates' ECR repositories, when the registry is ECR. */
  variantBuild?: { project: string; repositoryPrefix: string };
}

export const servingEnv = (): ServingEnv => ({
  endpointPrefix: requireEnv(ENV.endpointPrefix),
  endpointRoleArn: requireEnv(ENV.endpointRole),
  successTopicArn: requireEnv(ENV.predictionSuccessTopic),
  errorTopicArn: requireEnv(ENV.predictionErrorTopic),
  outputPath: requireEnv(ENV.predictionOutputPath),
  ...(process.env[ENV.templateVariantProject]
    ? { variantBuild: { project: requireEnv(ENV.templateVariantProject), repositoryPrefix: requireEnv(ENV.templateRepositoryPrefix) } }
    : {}),
});
