/**
 * Handler-tier fixture: the local AWS stand-ins (s3rver, dynalite, the Step Functions /
 * Secrets Manager / Lambda endpoint) in a temp dir, the secrets the handlers read, and `Deps`
 * built from real SDK clients exactly as a Lambda builds them (from process.env).
 *
 * The state machine is one callback task, so a test can hold a real task token and watch
 * SendTaskSuccess/Failure settle a real execution.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeExecutionCommand, StartExecutionCommand, type DescribeExecutionCommandOutput } from '@aws-sdk/client-sfn';
import { pollUntil, startLocalAws, type LocalAws, type LocalLambda } from '../../infra/local/aws/index.ts';
import * as aws from '#shared/aws';
import { mergeConfig, parseConfig, type Config } from '#shared/config';
import type { BaseDeps, Deps } from '#shared/deps';
import { ENV } from '#shared/env';
import { newTrainingId, sha256Hex } from '#shared/ids';
import { Store } from '#shared/store';
import { notStarted, type TrainingRecord } from '#shared/training';
import { waitingMachine } from './waiting-machine.ts';

export const SECRET_IDS = {
  callbackKey: 'local/callback-key',
  webhook: 'local/webhook-signing',
  apiTokens: 'local/api-tokens',
} as const;

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
}

export interface Fixture {
  local: LocalAws;
  deps: Deps;
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

export async function startFixture(opts: FixtureOptions = {}): Promise<Fixture> {
  const dataDir = mkdtempSync(join(tmpdir(), 'handlers-'));
  const callbackKey = randomBytes(32).toString('base64url');
  const webhookSecret = `whsec_${randomBytes(32).toString('base64')}`;
  const apiToken = `r8_${randomBytes(20).toString('hex')}`;
  const tokens = new Map<string, string>();
  const local = await startLocalAws({
    dataDir,
    definition,
    taskHandlers: {
      [WAIT_STATE]: async (_input, ctx) => {
        tokens.set(ctx.executionArn, ctx.taskToken!);
      },
    },
    secrets: {
      [SECRET_IDS.callbackKey]: JSON.stringify({ key: callbackKey }),
      [SECRET_IDS.webhook]: JSON.stringify({ key: webhookSecret }),
      [SECRET_IDS.apiTokens]: JSON.stringify({ tokens: [{ sha256: sha256Hex(apiToken), owners: ['*'] }] }),
      ...opts.secrets,
    },
    lambdas: opts.lambdas ?? {},
  });
  Object.assign(process.env, local.env, {
    [ENV.table]: local.table,
    [ENV.bucket]: local.bucket,
    [ENV.callbackKeySecret]: SECRET_IDS.callbackKey,
    [ENV.webhookSecret]: SECRET_IDS.webhook,
    [ENV.apiTokensSecret]: SECRET_IDS.apiTokens,
    [ENV.publicUrl]: PUBLIC_URL,
  });
  // After the env is set: the shared clients read their endpoints from it once.
  const deps: Deps = {
    config: testConfig(opts.config),
    store: new Store(aws.ddb(), local.table),
    s3: aws.s3(),
    sfn: aws.sfn(),
    secrets: aws.secretsManager(),
    bucket: local.bucket,
    publicUrl: PUBLIC_URL,
    now: () => new Date(),
  };
  let seq = 0;
  return {
    local,
    deps,
    callbackKey,
    webhookSecret,
    apiToken,
    withConfig: (over) => ({ ...deps, config: testConfig(mergeConfig(opts.config ?? {}, over)) }),
    async waitingTask() {
      const name = `wait-${process.pid}-${++seq}`;
      const out = await deps.sfn.send(new StartExecutionCommand({ stateMachineArn: local.stateMachineArn, name, input: '{}' }));
      const executionArn = out.executionArn!;
      const token = await pollUntil(() => tokens.get(executionArn), { what: 'the callback task' });
      return { executionArn, token };
    },
    async finished(executionArn) {
      await local.executions.whenDone(executionArn);
      return deps.sfn.send(new DescribeExecutionCommand({ executionArn }));
    },
    async stop() {
      await local.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
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
