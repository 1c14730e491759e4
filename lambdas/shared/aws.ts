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

/**
 * On Lambda one process is one container (local mode gives each function its own worker
 * thread). The handler-test fixture runs a second function in the test's process and names it
 * while it runs (infra/local/iam/containers.ts), so that it keeps its own clients, signed with
 * its own credentials, as on AWS.
 */
const CONTAINER = Symbol.for('dreambooth.container');
const container = (): object => (globalThis as { [CONTAINER]?: () => object | undefined })[CONTAINER]?.() ?? globalThis;

/** A value made on first use and kept for the container's life. */
export const memo = <T>(make: () => T) => {
  const values = new WeakMap<object, T>();
  return (): T => {
    const key = container();
    if (!values.has(key)) values.set(key, make());
    return values.get(key) as T;
  };
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
/** S3 for the functions that need it on a few paths only: the SDK loads on first use (./s3-sdk.ts). */
export const lazyS3 = /* @__PURE__ */ memo(async () => (await import('#shared/s3-sdk')).newS3Client());
