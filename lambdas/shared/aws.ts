/**
 * SDK clients, created once per container. Endpoints come from the SDK's own
 * AWS_ENDPOINT_URL_<SERVICE> variables, so local mode needs no branch here.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { CodeBuildClient } from '@aws-sdk/client-codebuild';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';

/** A value made on first use and kept for the container's life. */
export const memo = <T>(make: () => T) => {
  let v: T | undefined;
  return () => (v ??= make());
};

// Path-style addressing works on AWS and on every S3-compatible endpoint.
export const s3 = /* @__PURE__ */ memo(() => new S3Client({ forcePathStyle: true }));
export const ddb = /* @__PURE__ */ memo(() =>
  DynamoDBDocumentClient.from(new DynamoDBClient({}), {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  }),
);
export const sfn = /* @__PURE__ */ memo(() => new SFNClient({}));
export const secretsManager = /* @__PURE__ */ memo(() => new SecretsManagerClient({}));
export const lambda = /* @__PURE__ */ memo(() => new LambdaClient({}));
export const codebuild = /* @__PURE__ */ memo(() => new CodeBuildClient({}));
export const logs = /* @__PURE__ */ memo(() => new CloudWatchLogsClient({}));
