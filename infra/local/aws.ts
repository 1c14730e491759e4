/**
 * Local stand-ins for the AWS services the handlers call, together, so local mode runs the
 * deployed code paths with no AWS account: S3 (./s3.ts) and DynamoDB (./dynamodb/), each in a
 * worker thread of its own, and one endpoint (./endpoint.ts) for Step Functions (./stepfunctions/,
 * every state machine of the template), Secrets Manager (./secretsmanager/), Lambda Invoke
 * (./lambda/invoke.ts), SageMaker hosting and its runtime (./sagemaker/), Application Auto
 * Scaling and CloudWatch, with IAM (./iam/) in front of all of them when policies are given.
 * Handlers find them through the SDK's AWS_ENDPOINT_URL_<SERVICE> variables.
 */
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { PrincipalPolicies } from './cloudformation/policies.ts';
import type { TableDefinition } from './cloudformation/table.ts';
import { createTable, startDynamoDb } from './dynamodb/index.ts';
import { startEndpoint } from './endpoint.ts';
import { enforceIam, type LocalIam } from './iam/index.ts';
import type { Denial } from './iam/proxy.ts';
import type { LocalLambda } from './lambda/invoke.ts';
import { LOCAL_BUCKET, LOCAL_REGION, LOCAL_STATE_MACHINE_ARN, LOCAL_TABLE } from './names.ts';
import { createBucket, startS3, type AccessKey } from './s3.ts';
import type { LocalHosting } from './sagemaker/hosting.ts';
import { localHosting } from './sagemaker/index.ts';
import { secretsManagerApi } from './secretsmanager/api.ts';
import { SecretStore } from './secretsmanager/store.ts';
import { stepFunctionsApi } from './stepfunctions/api.ts';
import { ExecutionStore, INTERRUPTED_ERROR, type ExecutionRecord } from './stepfunctions/executions.ts';
import { LocalStepFunctions, type ExecutionEvent } from './stepfunctions/executor.ts';
import type { TaskHandler } from './stepfunctions/tasks.ts';
import { TaskTokens } from './stepfunctions/tokens.ts';
import type { LocalService } from './storage-host.ts';

export type { TaskContext, TaskHandler } from './stepfunctions/tasks.ts';
export type { ExecutionEvent } from './stepfunctions/executor.ts';
export type { ExecutionRecord, ExecutionStatus } from './stepfunctions/executions.ts';
export type { LocalLambda } from './lambda/invoke.ts';
export type { LocalIam } from './iam/index.ts';
export type { LocalHosting } from './sagemaker/hosting.ts';
export { INTERRUPTED_ERROR } from './stepfunctions/executions.ts';
export { pollUntil } from './poll.ts';

/** The operator's key pair (local mode itself, as CloudFormation on AWS): s3rver's built-in one. */
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface LocalAwsOptions {
  /** Root of all local state: `s3/`, `dynamodb/`, `executions.json`. */
  dataDir: string;
  /** The trainings table's keys and indexes, as the stack defines them (see ./cloudformation/table.ts). */
  table: TableDefinition;
  /** The (training) state machine in plain ASL (JSONPath), at LOCAL_STATE_MACHINE_ARN. */
  definition: object;
  /** One handler per Task state name; every Task of the definition needs one. */
  taskHandlers: Record<string, TaskHandler>;
  /** The template's other state machines, each at its own ARN. */
  machines?: LocalMachine[];
  /** SNS topic ARN → the functions the template subscribes to it (SageMaker's notifications). */
  subscriptions?: Record<string, string[]>;
  /** Secret id → SecretString, until a PutSecretValue writes a new version. */
  secrets: Record<string, string>;
  /** Where written secret versions are kept; without it the secrets are read-only. */
  secretsFile?: string;
  /** Function name → handler, for Lambda Invoke. */
  lambdas: Record<string, LocalLambda>;
  onExecutionEvent?: (e: ExecutionEvent) => void;
  log?: (line: string) => void;
  /** The functions' access keys (./lambda/environment.ts), which S3 verifies signatures with. */
  accessKeys?: AccessKey[];
  /**
   * Each principal's policies from the template (./cloudformation/policies.ts). When given,
   * every call to the local services is authenticated and authorised as AWS does it; a
   * function signs with its key from `accessKeys` (by its key id), others get derived keys.
   */
  iam?: Record<string, PrincipalPolicies>;
  /** Told of every refused call. */
  onDenial?: (d: Denial) => void;
}

export interface LocalMachine {
  stateMachineArn: string;
  definition: object;
  taskHandlers: Record<string, TaskHandler>;
}

export interface LocalAws {
  /** AWS_* variables that point the SDK at the local services. */
  env: Record<string, string>;
  /** The training state machine's. */
  stateMachineArn: string;
  /** Every state machine's, the training one first. */
  stateMachineArns: string[];
  /** SageMaker hosting, with Application Auto Scaling and CloudWatch. */
  hosting: LocalHosting;
  bucket: string;
  table: string;
  /** Creates the bucket and table when missing (startLocalAws already did). */
  createResources(): Promise<void>;
  /** Closes every server; executions still running stay where they are, and the next start resumes them. */
  stop(): Promise<void>;
  /** Present when the services enforce IAM. */
  iam?: LocalIam;
  executions: {
    /** Every machine's, newest first. */
    list(): ExecutionRecord[];
    get(executionArn: string): ExecutionRecord | undefined;
    /** Resolves with the record once the execution has ended. */
    whenDone(executionArn: string): Promise<ExecutionRecord>;
    /**
     * Resumes the executions found running at start-up, each from the state it was in; once.
     * Call it when the Task states' handlers can run.
     */
    resume(): { resumed: ExecutionRecord[]; interrupted: ExecutionRecord[] };
    /** Stops every execution where it is, still RUNNING on disk (a graceful stop's first step). */
    suspend(): Promise<void>;
    /** Before resume: points the held positions naming URL `from` at `to` (./moved-servers.ts); how many. */
    retarget(from: string, to: string): number;
    /** Executions found running that could not resume, now FAILED with error Local.Interrupted (filled by resume). */
    interrupted: ExecutionRecord[];
  };
}

export async function startLocalAws(opts: LocalAwsOptions): Promise<LocalAws> {
  const log = opts.log ?? (() => undefined);
  const onEvent = opts.onExecutionEvent ?? (() => undefined);
  const store = new ExecutionStore(join(opts.dataDir, 'executions.json'));
  // Before the endpoint exists, so no new execution can be taken for one that was running.
  const found = store.load();
  const interrupted: ExecutionRecord[] = [];
  const tokens = new TaskTokens();
  const training = { stateMachineArn: LOCAL_STATE_MACHINE_ARN, definition: opts.definition, taskHandlers: opts.taskHandlers };
  const machines = [training, ...(opts.machines ?? [])].map((m) => new LocalStepFunctions({ ...m, store, tokens, onEvent, log }));
  const services: LocalService[] = [];
  let reached: { url: string; iam?: LocalIam } | undefined;
  const sagemaker = localHosting({ s3: () => reached!, lambdas: opts.lambdas, subscriptions: opts.subscriptions ?? {}, operator: CREDENTIALS, log, dataDir: opts.dataDir });
  try {
    const { urls, iam } = await startServers(opts, { stepFunctions: stepFunctionsApi(machines, tokens), hosting: sagemaker.hosting }, services, log);
    reached = { url: urls.s3, iam };
    const createResources = () => createAll(urls.s3, urls.dynamodb, opts.table);
    await createResources();
    const stop = async () => {
      await Promise.all(machines.map((m) => m.shutdown()));
      // Before S3 closes: an endpoint's requests read and write it.
      await sagemaker.close();
      tokens.closeAll();
      await closeAll(services);
    };
    const runnerOf = (arn: string) => machines.find((m) => m.owns(arn)) ?? machines[0]!;
    const executions = {
      list: () => store.list(),
      get: (arn: string) => store.get(arn),
      whenDone: (arn: string) => runnerOf(arn).whenDone(arn),
      resume: () => resumeAll(found, machines, store, interrupted, onEvent),
      suspend: async () => {
        await Promise.all(machines.map((m) => m.shutdown()));
      },
      retarget: (from: string, to: string) => store.retarget(from, to),
      interrupted,
    };
    return {
      env: localEnv(urls),
      iam,
      stateMachineArn: LOCAL_STATE_MACHINE_ARN,
      stateMachineArns: machines.map((m) => m.stateMachineArn),
      hosting: sagemaker.hosting,
      bucket: LOCAL_BUCKET,
      table: LOCAL_TABLE,
      createResources,
      stop,
      executions,
    };
  } catch (err) {
    await sagemaker.close();
    await closeAll(services);
    throw err;
  }
}

/**
 * Resumes each execution found running, on its machine; one that cannot resume (its state or its
 * machine is gone) is closed as interrupted and reported.
 */
function resumeAll(
  found: ExecutionRecord[],
  machines: LocalStepFunctions[],
  store: ExecutionStore,
  interrupted: ExecutionRecord[],
  onEvent: (e: ExecutionEvent) => void,
): { resumed: ExecutionRecord[]; interrupted: ExecutionRecord[] } {
  const resumed: ExecutionRecord[] = [];
  for (const rec of found.splice(0)) {
    const runner = machines.find((m) => m.owns(rec.executionArn));
    if (runner?.resume(rec)) {
      resumed.push(rec);
      continue;
    }
    if (!runner) {
      const cause = 'local mode could not resume this execution: its state machine is no longer in the template';
      store.close(rec.executionArn, { status: 'FAILED', error: INTERRUPTED_ERROR, cause });
    }
    interrupted.push(rec);
    const { executionArn, name, error, cause } = rec;
    onEvent({ executionArn, name, type: 'ExecutionInterrupted', status: 'INTERRUPTED', error, cause });
  }
  return { resumed, interrupted };
}

/** S3, DynamoDB and the endpoint, and IAM in front of them when policies are given; where handlers reach them. */
async function startServers(
  opts: LocalAwsOptions,
  apis: { stepFunctions: ReturnType<typeof stepFunctionsApi>; hosting: LocalHosting },
  services: LocalService[],
  log: (line: string) => void,
): Promise<{ urls: { s3: string; dynamodb: string; endpoint: string }; iam?: LocalIam }> {
  // Each in its worker thread, loading at the same time; both kept to close, even when one failed.
  const [s3, dynamodb] = both(await Promise.allSettled([startS3(join(opts.dataDir, 's3'), opts.accessKeys), startDynamoDb(join(opts.dataDir, 'dynamodb'))]), services);
  const endpoint = await startEndpoint({
    stepFunctions: apis.stepFunctions,
    secretsManager: secretsManagerApi(new SecretStore(opts.secrets, opts.secretsFile), LOCAL_REGION),
    lambdas: opts.lambdas,
    sagemaker: apis.hosting.api(),
    applicationAutoScaling: apis.hosting.autoScaling.api(),
    cloudWatch: apis.hosting.cloudWatch.api(),
    invokeEndpointAsync: apis.hosting.runtime(),
    log,
  }).then(keep(services));
  if (!opts.iam) return { urls: { s3: s3.url, dynamodb: dynamodb.url, endpoint: endpoint.url } };
  return enforceIam({
    policies: opts.iam,
    dataDir: opts.dataDir,
    operator: CREDENTIALS,
    upstream: { s3, dynamodb: dynamodb.url, endpoint: endpoint.url },
    keep: keep(services),
    log,
    onDenial: opts.onDenial,
    given: opts.accessKeys,
  });
}

function localEnv(urls: { s3: string; dynamodb: string; endpoint: string }): Record<string, string> {
  return {
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_S3: urls.s3,
    AWS_ENDPOINT_URL_DYNAMODB: urls.dynamodb,
    AWS_ENDPOINT_URL_SFN: urls.endpoint,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: urls.endpoint,
    AWS_ENDPOINT_URL_LAMBDA: urls.endpoint,
    AWS_ENDPOINT_URL_SAGEMAKER: urls.endpoint,
    AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME: urls.endpoint,
    AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING: urls.endpoint,
    AWS_ENDPOINT_URL_CLOUDWATCH: urls.endpoint,
    // s3rver stores the aws-chunked framing of streamed uploads that carry default checksums.
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
  };
}

async function createAll(s3Url: string, dynamodbUrl: string, table: TableDefinition): Promise<void> {
  const common = { region: LOCAL_REGION, credentials: CREDENTIALS };
  const s3 = new S3Client({ ...common, endpoint: s3Url, forcePathStyle: true });
  const dynamodb = new DynamoDBClient({ ...common, endpoint: dynamodbUrl });
  try {
    await createBucket(s3, LOCAL_BUCKET);
    await createTable(dynamodb, LOCAL_TABLE, table);
  } finally {
    s3.destroy();
    dynamodb.destroy();
  }
}

/** The services that started, kept (in order) to close; the first failure thrown. */
function both<A extends LocalService, B extends LocalService>(started: [PromiseSettledResult<A>, PromiseSettledResult<B>], services: LocalService[]): [A, B] {
  for (const r of started) if (r.status === 'fulfilled') services.push(r.value);
  for (const r of started) if (r.status === 'rejected') throw r.reason;
  return started.map((r) => (r as PromiseFulfilledResult<A | B>).value) as [A, B];
}

const keep =
  (services: LocalService[]) =>
  <S extends LocalService>(service: S): S => {
    services.push(service);
    return service;
  };

async function closeAll(services: LocalService[]): Promise<void> {
  await Promise.all(
    services
      .splice(0)
      .reverse()
      .map((s) => s.close()),
  );
}
