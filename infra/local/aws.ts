/**
 * Local stand-ins for the AWS services the handlers call, so local mode runs the deployed
 * code paths with no AWS account: s3rver (S3), dynalite (DynamoDB), and one endpoint for
 * Step Functions (the synthesized ASL run by aws-local-stepfunctions), Secrets Manager and
 * Lambda Invoke. Handlers find them through the SDK's AWS_ENDPOINT_URL_<SERVICE> variables.
 */
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { startEndpoint } from './endpoint.ts';
import { ExecutionStore, type ExecutionRecord } from './executions.ts';
import { SecretStore } from './secret-store.ts';
import { secretsManagerApi, type LocalLambda } from './services.ts';
import { LocalStepFunctions, type ExecutionEvent } from './sfn.ts';
import { stepFunctionsApi } from './sfn-api.ts';
import { createBucket, createTable, startDynamoDb, startS3, type AccessKey, type LocalS3, type LocalService } from './storage.ts';
import type { TaskHandler } from './tasks.ts';
import { credentialsOf, makePrincipals, type Credentials } from '../iam/principals.ts';
import { authorize, decideS3, deniedMessage, startAuthProxy, type Authority, type Denial, type Principal } from '../iam/proxy.ts';
import type { PrincipalPolicies } from '../iam/template.ts';
import { LOCAL_ACCOUNT, LOCAL_BUCKET, LOCAL_REGION, LOCAL_STATE_MACHINE_ARN, LOCAL_TABLE } from '../names.ts';
import type { TableDefinition } from '../table.ts';
import { TaskTokens } from './tokens.ts';

export type { TaskContext, TaskHandler } from './tasks.ts';
export type { ExecutionEvent } from './sfn.ts';
export type { ExecutionRecord, ExecutionStatus } from './executions.ts';
export type { LocalLambda } from './services.ts';
export { INTERRUPTED_ERROR } from './executions.ts';
export { pollUntil } from './poll.ts';

/** The operator's key pair (local mode itself, as CloudFormation on AWS): s3rver's built-in one. */
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface LocalAwsOptions {
  /** Root of all local state: `s3/`, `dynamodb/`, `executions.json`. */
  dataDir: string;
  /** The trainings table's keys and indexes, as the stack defines them (see ../table.ts). */
  table: TableDefinition;
  /** The state machine in plain ASL (JSONPath). */
  definition: object;
  /** One handler per Task state name; every Task of the definition needs one. */
  taskHandlers: Record<string, TaskHandler>;
  /** Secret id → SecretString, until a PutSecretValue writes a new version. */
  secrets: Record<string, string>;
  /** Where written secret versions are kept; without it the secrets are read-only. */
  secretsFile?: string;
  /** Function name → handler, for Lambda Invoke. */
  lambdas: Record<string, LocalLambda>;
  onExecutionEvent?: (e: ExecutionEvent) => void;
  log?: (line: string) => void;
  /** The functions' access keys (infra/local/functions.ts), which S3 verifies signatures with. */
  accessKeys?: AccessKey[];
  /**
   * Each principal's policies from the template (infra/local/iam/template.ts). When given,
   * every call to the local services is authenticated and authorised as AWS does it; a
   * function signs with its key from `accessKeys` (by its key id), others get derived keys.
   */
  iam?: Record<string, PrincipalPolicies>;
  /** Told of every refused call. */
  onDenial?: (d: Denial) => void;
}

export interface LocalIam {
  /** The credentials of a function (by handler name), `state-machine` or `build`. */
  credentials(principal: string): Credentials;
  /** Calls refused so far. */
  denials: Denial[];
  /** Null when `principal` may do `action` on `resource`; else AWS's AccessDenied message. */
  check(principal: string, action: string, resource: string): string | null;
  principals: ReadonlyMap<string, Principal>;
}

export interface LocalAws {
  /** AWS_* variables that point the SDK at the local services. */
  env: Record<string, string>;
  stateMachineArn: string;
  bucket: string;
  table: string;
  /** Creates the bucket and table when missing (startLocalAws already did). */
  createResources(): Promise<void>;
  /** Closes every server; executions still running are reported as interrupted on the next start. */
  stop(): Promise<void>;
  /** Present when the services enforce IAM. */
  iam?: LocalIam;
  executions: {
    /** Newest first. */
    list(): ExecutionRecord[];
    get(executionArn: string): ExecutionRecord | undefined;
    /** Resolves with the record once the execution has ended. */
    whenDone(executionArn: string): Promise<ExecutionRecord>;
    /** Executions found running at start-up, now FAILED with error Local.Interrupted. */
    interrupted: ExecutionRecord[];
  };
}

export async function startLocalAws(opts: LocalAwsOptions): Promise<LocalAws> {
  const log = opts.log ?? (() => undefined);
  const onEvent = opts.onExecutionEvent ?? (() => undefined);
  const store = new ExecutionStore(join(opts.dataDir, 'executions.json'));
  // Before the endpoint exists, so no new execution can be taken for an interrupted one.
  const interrupted = store.load();
  const tokens = new TaskTokens();
  const sfn = new LocalStepFunctions({
    definition: opts.definition,
    taskHandlers: opts.taskHandlers,
    stateMachineArn: LOCAL_STATE_MACHINE_ARN,
    store,
    tokens,
    onEvent,
    log,
  });

  const services: LocalService[] = [];
  try {
    const s3 = await startS3(join(opts.dataDir, 's3'), opts.accessKeys).then(keep(services));
    const dynamodb = await startDynamoDb(join(opts.dataDir, 'dynamodb')).then(keep(services));
    const endpoint = await startEndpoint({
      stepFunctions: stepFunctionsApi(sfn, tokens),
      secretsManager: secretsManagerApi(new SecretStore(opts.secrets, opts.secretsFile), LOCAL_REGION),
      lambdas: opts.lambdas,
      log,
    }).then(keep(services));

    const iam = opts.iam ? await enforce(opts.iam, opts.dataDir, { s3, dynamodb: dynamodb.url, endpoint: endpoint.url }, services, log, opts.onDenial, opts.accessKeys) : null;
    const urls = iam?.urls ?? { s3: s3.url, dynamodb: dynamodb.url, endpoint: endpoint.url };
    const createResources = () => createAll(urls.s3, urls.dynamodb, opts.table);
    await createResources();
    for (const rec of interrupted) {
      onEvent({ executionArn: rec.executionArn, name: rec.name, type: 'ExecutionInterrupted', status: 'INTERRUPTED', error: rec.error, cause: rec.cause });
    }
    return {
      env: localEnv(urls),
      iam: iam?.iam,
      stateMachineArn: LOCAL_STATE_MACHINE_ARN,
      bucket: LOCAL_BUCKET,
      table: LOCAL_TABLE,
      createResources,
      stop: async () => {
        await sfn.shutdown();
        tokens.closeAll();
        await closeAll(services);
      },
      executions: {
        list: () => sfn.list(),
        get: (arn) => store.get(arn),
        whenDone: (arn) => sfn.whenDone(arn),
        interrupted,
      },
    };
  } catch (err) {
    await closeAll(services);
    throw err;
  }
}

/**
 * Gates local S3 and puts the authorising proxies in front of the two other servers; handlers
 * are pointed at them.
 */
async function enforce(
  policies: Record<string, PrincipalPolicies>,
  dataDir: string,
  upstream: { s3: LocalS3; dynamodb: string; endpoint: string },
  services: LocalService[],
  log: (line: string) => void,
  onDenial?: (d: Denial) => void,
  given: AccessKey[] = [],
) {
  const principals = makePrincipals(dataDir, policies, CREDENTIALS, given);
  // s3rver accepts only access key ids it knows (it checks no V4 signature: the proxy does).
  await upstream.s3.addKeys([...principals.values()].map((p) => ({ accessKeyId: p.accessKeyId, secretAccessKey: p.secretAccessKey })));
  const authority: Authority = { principals, denials: [], log, onDenial, region: LOCAL_REGION, account: LOCAL_ACCOUNT };
  await upstream.s3.gate((request) => decideS3(authority, request));
  const dynamodb = await startAuthProxy('dynamodb', upstream.dynamodb, authority).then(keep(services));
  const endpoint = await startAuthProxy('endpoint', upstream.endpoint, authority).then(keep(services));
  const byName = (name: string) => [...principals.values()].find((p) => p.name === name);
  const iam: LocalIam = {
    credentials: (name) => credentialsOf(principals, name),
    denials: authority.denials,
    principals,
    check(name, action, resource) {
      const principal = byName(name);
      if (!principal) return `local IAM: no principal named ${name}`;
      const denial = authorize(authority, principal, [{ service: action.split(':')[0]!, action, resource }]);
      return denial && deniedMessage(authority, principal, denial);
    },
  };
  return { urls: { s3: upstream.s3.url, dynamodb: dynamodb.url, endpoint: endpoint.url }, iam };
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

const keep = (services: LocalService[]) => <S extends LocalService>(service: S): S => {
  services.push(service);
  return service;
};

async function closeAll(services: LocalService[]): Promise<void> {
  await Promise.all(services.splice(0).reverse().map((s) => s.close()));
}
