/**
 * Handler-tier fixture: the local AWS stand-ins (s3rver, dynalite, the Step Functions /
 * Secrets Manager / Lambda endpoint) in a temp dir, the secrets the handlers read, and `Deps`
 * built from real SDK clients exactly as a Lambda builds them (from process.env).
 *
 * The state machine is one callback task, so a test can hold a real task token and watch
 * SendTaskSuccess/Failure settle a real execution.
 *
 * IAM is enforced as in local mode: the services allow each call by the caller's policies from
 * the template synthesized with the test's configuration. The process runs as the function
 * under test (`as`), so `deps` and the handler's own clients sign as it. `operator` is local
 * mode itself (bucket and table owner) for a test's setup and inspection; nothing is granted
 * by hand.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand, type DescribeExecutionCommandOutput } from '@aws-sdk/client-sfn';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { newProcessContainer, runAs, type Container } from '#infra/local/iam/containers';
import { localPolicies } from '#infra/local/cloudformation/policies';
import { withDropped } from '#infra/local/iam/dropped';
import { pollUntil, startLocalAws, type LocalAws, type LocalLambda } from '#infra/local/aws';
import * as aws from '#shared/aws';
import { mergeConfig, parseConfig, type Config } from '#shared/config';
import type { BaseDeps, Deps } from '#shared/deps';
import { resetRuntimeConfig } from '#shared/runtime-config';
import type { HandlerName } from '#infra/constructs/function';
import type { EnvironmentValues } from '#infra/functions';
import { synthesize } from '#infra/local/cloudformation/synthesize';
import { LOCAL_PREDICTION_STATE_MACHINE_ARN } from '#infra/local/names';
import { servingValuesOf } from '#infra/local/cloudformation/serving';
import { snsSubscriptionsOf } from '#infra/local/cloudformation/subscriptions';
import { localEnvironment, localPrincipals } from '#infra/local/lambda/environment';
import { LOCAL_SECRET_IDS } from '#infra/local/names';
import { newTrainingId, sha256Hex } from '#shared/ids';
import { Store } from '#shared/store';
import { notStarted, type TrainingRecord } from '#shared/training';
import { waitingMachine } from './waiting-machine.ts';
import { testTable } from './table.ts';

export { LOCAL_SECRET_IDS };

/** Nothing listens here: the handlers only build URLs on it. */
export const PUBLIC_URL = 'http://127.0.0.1:9/api';
export const TEMPLATE_DIGEST = 'a'.repeat(64);
const WAIT_STATE = 'Wait for the trainer';

const definition = waitingMachine(WAIT_STATE, 'start-trainer');

/** The base configuration; tests merge their trainers and registry over it. */
export function testConfig(over: unknown = {}): Config {
  return parseConfig(
    mergeConfig(
      {
        trainers: { cog: { backend: 'cog', url: 'http://127.0.0.1:9' } },
        templates: {
          default: 'vanilla',
          catalog: { vanilla: { repository: '127.0.0.1:5000/templates/vanilla', digests: [TEMPLATE_DIGEST] } },
        },
        egress: { allow: ['127.0.0.0/8'] },
      },
      over,
    ),
  );
}

export interface FixtureOptions {
  config?: unknown;
  /** More secrets (id → SecretString), e.g. a Cog trainer's WEBHOOK_AUTH_TOKEN. */
  secrets?: Record<string, string>;
  lambdas?: Record<string, LocalLambda>;
  /**
   * The function under test: process.env becomes exactly its local-mode environment (its declared
   * variables, the baked configuration, its own credentials), as local mode gives it.
   */
  as: HandlerName;
}

export interface Fixture {
  local: LocalAws;
  /** The function under test's clients. */
  deps: Deps;
  /** Local mode's own clients (the bucket and table owner): for setup and inspection only. */
  operator: Deps;
  /** Another function's clients, for a test that follows a call into a second function. */
  clientsOf(fn: HandlerName): Deps;
  /** What the Serving construct tells its functions, resolved to local names. */
  serving: EnvironmentValues['serving'];
  callbackKey: string;
  webhookSecret: string;
  apiToken: string;
  /** Same clients, another configuration. */
  withConfig(over: unknown): Deps;
  /** Starts an execution that waits on a callback task; resolves once its real token exists. */
  waitingTask(): Promise<{ executionArn: string; token: string }>;
  /** Resolves once the execution ended. */
  finished(executionArn: string): Promise<DescribeExecutionCommandOutput>;
  stop(): Promise<void>;
}

export async function startFixture(opts: FixtureOptions): Promise<Fixture> {
  const dataDir = mkdtempSync(join(tmpdir(), 'handlers-'));
  const callbackKey = randomBytes(32).toString('base64url');
  const webhookSecret = `whsec_${randomBytes(32).toString('base64')}`;
  const apiToken = `r8_${randomBytes(20).toString('hex')}`;
  const tokens = new Map<string, string>();
  const config = testConfig(opts.config);
  const synth = synthesize(config);
  const principals = localPrincipals(dataDir, synth.functions);
  const local = await startLocalAws({
    dataDir,
    table: testTable(),
    definition,
    taskHandlers: {
      [WAIT_STATE]: async (_input, ctx) => {
        tokens.set(ctx.executionArn, ctx.taskToken!);
      },
    },
    secrets: {
      [LOCAL_SECRET_IDS.callbackKey]: JSON.stringify({ key: callbackKey }),
      [LOCAL_SECRET_IDS.webhookSigning]: JSON.stringify({ key: webhookSecret }),
      [LOCAL_SECRET_IDS.apiTokens]: JSON.stringify({ tokens: [{ sha256: sha256Hex(apiToken), owners: ['*'] }] }),
      ...opts.secrets,
    },
    // Each local Lambda runs as its own function, in its own environment, as local mode runs it.
    lambdas: Object.fromEntries(Object.entries(opts.lambdas ?? {}).map(([name, fn]) => [name, (payload: unknown) => runAs(containerOf(name), () => fn(payload))])),
    // SageMaker's notifications reach the subscribed functions among `lambdas`, as in local mode.
    subscriptions: snsSubscriptionsOf(synth),
    accessKeys: principals,
    iam: withDropped(localPolicies(synth.stack)),
  });
  // The same declarations and the same code as local mode (infra/local/lambda/environment.ts).
  const values: EnvironmentValues = {
    table: local.table,
    bucket: local.bucket,
    stateMachineArn: local.stateMachineArn,
    predictionStateMachineArn: LOCAL_PREDICTION_STATE_MACHINE_ARN,
    publicUrl: PUBLIC_URL,
    registryHost: '',
    sagemakerJobPrefix: '',
    trainerImageHost: '',
    sagemakerMirrors: '{}',
    serving: servingValuesOf(synth),
    secretId: (secret) => LOCAL_SECRET_IDS[secret],
    functionName: (fn) => (opts.lambdas && Object.hasOwn(opts.lambdas, fn) ? fn : undefined),
  };
  const principal = principals.find((p) => p.fn === opts.as)!;
  const containers = new Map<string, Container>();
  const containerOf = (name: string): Container => {
    const p = principals.find((q) => q.fn === name);
    if (!p) throw new Error(`the fixture serves ${name}, which the template does not deploy`);
    if (!containers.has(name)) containers.set(name, { name, env: localEnvironment(p.fn, { config, values, awsEnv: local.env, principal: p }) });
    return containers.get(name)!;
  };
  Object.assign(process.env, localEnvironment(principal.fn, { config, values, awsEnv: local.env, principal }));
  resetRuntimeConfig();
  // An earlier fixture in this process left clients bound to its (stopped) servers.
  newProcessContainer();
  // After the env is set: the shared clients read their endpoints from it once.
  const deps: Deps = {
    config,
    store: new Store(aws.ddb(), local.table),
    s3: aws.s3(),
    sfn: aws.sfn(),
    secrets: aws.secretsManager(),
    bucket: local.bucket,
    publicUrl: PUBLIC_URL,
    now: () => new Date(),
  };
  const operator = clientsWith(local, deps, { accessKeyId: local.env.AWS_ACCESS_KEY_ID!, secretAccessKey: local.env.AWS_SECRET_ACCESS_KEY! });
  const others = new Map<string, Deps>();
  let seq = 0;
  return {
    local,
    deps,
    operator,
    clientsOf(fn) {
      if (!others.has(fn)) others.set(fn, clientsWith(local, deps, local.iam!.credentials(fn)));
      return others.get(fn)!;
    },
    serving: values.serving,
    callbackKey,
    webhookSecret,
    apiToken,
    withConfig: (over) => ({ ...deps, config: testConfig(mergeConfig(opts.config ?? {}, over)) }),
    async waitingTask() {
      const name = `wait-${process.pid}-${++seq}`;
      const out = await operator.sfn.send(new StartExecutionCommand({ stateMachineArn: local.stateMachineArn, name, input: '{}' }));
      const executionArn = out.executionArn!;
      const token = await pollUntil(() => tokens.get(executionArn), { what: 'the callback task' });
      return { executionArn, token };
    },
    async finished(executionArn) {
      await local.executions.whenDone(executionArn);
      return operator.sfn.send(new DescribeExecutionCommand({ executionArn }));
    },
    async stop() {
      await local.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The same deps with clients signing with other credentials (the operator's, another function's). */
function clientsWith(local: LocalAws, deps: Deps, credentials: { accessKeyId: string; secretAccessKey: string }): Deps {
  const common = { region: local.env.AWS_REGION, credentials };
  const ddb = DynamoDBDocumentClient.from(new DynamoDBClient({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_DYNAMODB }), {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
  return {
    ...deps,
    store: new Store(ddb, local.table),
    s3: new S3Client({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_S3, forcePathStyle: true }),
    sfn: new SFNClient({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_SFN }),
    secrets: new SecretsManagerClient({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_SECRETS_MANAGER }),
  };
}

/** A seed-flavour training in `starting`, stored; `over` replaces whole fields. */
export async function newTraining(d: BaseDeps, over: Partial<TrainingRecord> = {}): Promise<TrainingRecord> {
  const id = newTrainingId();
  const t: TrainingRecord = {
    id,
    flavour: 'seed',
    model: 'alice/portrait',
    owner: 'alice',
    trainer: 'cog',
    trainer_backend: 'cog',
    trainer_model: 'dreambooth/cog',
    trainer_version: 'cog',
    input: { instance_prompt: 'a photo of sks person', class_prompt: 'a photo of a person' },
    template: { name: 'vanilla', repository: '127.0.0.1:5000/templates/vanilla', digest: TEMPLATE_DIGEST },
    notes: 'first try',
    webhook: null,
    webhook_events_filter: ['completed'],
    ...notStarted(id, new Date().toISOString()),
    ...over,
  };
  if (!(await d.store.createTraining(t))) throw new Error(`training ${id} exists already`);
  return t;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface TestServer {
  url: string;
  requests: SeenRequest[];
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1:0 that records every request before `reply` answers it. */
export async function startServer(
  reply: (req: SeenRequest, res: http.ServerResponse) => unknown,
): Promise<TestServer> {
  const requests: SeenRequest[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
    requests.push(seen);
    await reply(seen, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers JSON. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
