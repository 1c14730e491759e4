/**
 * Local mode: the whole service on one machine, no AWS account. The state machine and the REST
 * API are the ones CDK synthesizes (run by aws-local-stepfunctions, served by ./server.ts);
 * every Task and route runs the same handler module as on AWS, each function in its own
 * environment as its own principal (./functions.ts); the handlers reach s3rver, dynalite and a
 * small Step Functions / Secrets Manager / Lambda endpoint through the SDK's AWS_ENDPOINT_URL_*
 * variables.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mergeConfig, parseConfig, type Config } from '#shared/config';
import { Store } from '#shared/store';
import { setLogSink } from '#shared/log';
import { OciLayout } from '#shared/oci/layout';
import { RegistryClient } from '#shared/oci/registry';
import { createDemoTemplate } from '#shared/oci/template';
import { editTokens, parseTokens, upsertTokens } from '../../lambdas/authorizer/token-list.ts';
import { startDemoTrainerServer } from '../../lambdas/demo-trainer/server.ts';
import { definitionOf, ecrRepositoryArn, LOCAL_ACCOUNT, LOCAL_BUILD_PROJECT, LOCAL_REGION, lambdaArn, lambdaEvent } from '../asl.ts';
import type { HandlerName } from '../constructs/function.ts';
import type { EnvironmentValues, ServiceSecret } from '../functions.ts';
import { restApiOf, synthesize, type LocalApi, type Synthesized } from '../template.ts';
import { startLocalAws, type LocalAws, type TaskHandler } from './aws/index.ts';
import { isPersisted } from './aws/secret-store.ts';
import { appendWorkers, runLocalBuild, type BuildStrategy } from './build.ts';
import { describeLocalImages, runLocalMirror, runLocalTrainingJob } from './sagemaker.ts';
import { sagemakerTrainers } from '#shared/sagemaker';
import { BUILD_PRINCIPAL, checkIntegration, LOCAL_IAM_DENIED, SAGEMAKER_JOB_PRINCIPAL } from './iam/index.ts';
import { localPolicies, withDropped } from './iam/template.ts';
import { localEnvironment, localPrincipals, startLocalFunctions, type LocalFunctions, type LocalPrincipal } from './functions.ts';
import { startRegistry, registryInstalled, type LocalRegistry } from './registry.ts';
import { writeLocalAddress } from './address.ts';
import { loadLocalSecrets, SECRET_IDS, SECRETS_FILE } from './secrets.ts';
import { startLocalServer } from './server.ts';
import { tableOf } from './table.ts';
import { Terminal } from './terminal.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LOOPBACK = ['127.0.0.0/8', '::1/128'];

/** The service's own secrets by the ids local mode stores them under. */
const LOCAL_SECRET_IDS: Record<ServiceSecret, string> = {
  apiTokens: SECRET_IDS.apiTokens,
  webhookSigning: SECRET_IDS.webhook,
  callbackKey: SECRET_IDS.callbackKey,
};

export interface LocalModeOptions {
  port: number;
  dataDir: string;
  token?: string;
  /** JSON in the `dreambooth` schema merged over cdk.json's. */
  configOverride?: unknown;
  /** `HOST:PORT` of a registry to use instead of starting one. */
  registry?: string;
  /** `none` forces the OCI layout even when a registry could be started. */
  registryMode?: 'auto' | 'none';
  build?: BuildStrategy | 'auto';
  quiet?: boolean;
  /** More Secrets Manager secrets (id → SecretString) the configuration names, e.g. a Replicate token. */
  secrets?: Record<string, string>;
  /** Seconds a stopped SageMaker job's container gets between SIGTERM and SIGKILL. @default 120 */
  stopGraceSeconds?: number;
}

export interface LocalMode {
  url: string;
  token: string;
  tokenGenerated: boolean;
  config: Config;
  buildStrategy: BuildStrategy;
  image: { registry: string | null; layoutDir: string | null };
  aws: LocalAws;
  /** Each function's principal: its credentials and its role in the synthesized template. */
  functions: LocalPrincipal[];
  terminal: Terminal;
  stop(): Promise<void>;
}

/** What the server and the tasks reach once everything has started. */
interface Wired {
  api: LocalApi;
  functions: LocalFunctions;
  /** S3 clients of the upload sink (writer, reader), the build and a SageMaker job, each as its AWS role. */
  storage: { s3: S3Client; reader: S3Client; build: S3Client; job: S3Client | null; bucket: string };
  awsEnv: Record<string, string>;
}

/** What a step started and must stop, newest first. */
type Stops = (() => Promise<void>)[];

/**
 * Starts local mode in named steps: the configuration, the image store, the local template, the
 * HTTP server and demo trainers (whose URLs complete the configuration), the synthesized
 * template, the local AWS services, the functions. Nothing here changes process-wide state but
 * the service log's sink: the functions get their own environments, local mode's own clients
 * their endpoints explicitly.
 */
export async function startLocalMode(opts: LocalModeOptions): Promise<LocalMode> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const terminal = new Terminal(join(dataDir, 'service.log'), opts.quiet ?? false);
  setLogSink((line) => terminal.serviceLog(line));
  const stops: Stops = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    stops.length = 0;
    terminal.close();
  };
  try {
    const base = loadConfig(opts.configOverride);
    const secrets = loadLocalSecrets(dataDir, opts.token);
    const images = await startImageStore(opts, dataDir, stops);
    const buildStrategy = await chooseBuild(opts.build ?? 'auto', base.build.strategy, images.registryHost, (l) => terminal.note(l));
    if (buildStrategy === 'append') {
      // The build's worker loads while local mode starts; the first build then starts at once.
      appendWorkers.ready().catch((e: Error) => terminal.note(`the build worker did not start: ${e.message}`));
      stops.push(() => appendWorkers.stop());
    }
    const template = await createLocalTemplate(images, localDefaultTemplate(opts.configOverride));

    let wired: Wired | null = null;
    const server = await startLocalServer({
      port: opts.port,
      api: () => wired!.api,
      invoke: (fn, event) => wired!.functions.invoke(fn, event),
      storage: () => wired!.storage,
    });
    stops.push(() => server.stop());
    const trainers = { ...(await startDemoTrainers(base, server.url, stops, terminal)), ...(await unavailableSageMakerTrainers(base, terminal)) };
    const config = parseConfig(mergeConfig(base, { trainers, registry: registryConfig(images), templates: template }), 'local configuration');

    const synth = synthesize(config);
    const principals = localPrincipals(dataDir, synth.functions);
    let functions: LocalFunctions | null = null;
    const invoke = (fn: HandlerName, event: unknown) => functions!.invoke(fn, event);
    const aws = await startLocalAws({
      dataDir,
      table: tableOf(synth.template),
      definition: definitionOf(synth).asl,
      taskHandlers: taskHandlersFor(synth, invoke, { strategy: buildStrategy, registryHost: images.registryHost, config, terminal, wired: () => wired!, dataDir, stopGraceSeconds: opts.stopGraceSeconds, iam: () => aws.iam }),
      secrets: localSecretValues(secrets, opts.secrets),
      secretsFile: join(dataDir, SECRETS_FILE),
      lambdas: Object.fromEntries(synth.functions.map((f) => [f.name, (payload: unknown) => invoke(f.name, payload)])),
      onExecutionEvent: (e) => {
        terminal.execution(e);
        if (e.status !== 'RUNNING' && e.status !== 'INTERRUPTED' && functions) void statusChanged(e.executionArn, e.name, e.status);
      },
      accessKeys: principals,
      // Every call is signed by its principal and allowed by its role's policies in the template.
      iam: withDropped(localPolicies(synth.stack)),
      log: (line) => terminal.note(line),
      // Printed, and kept in service.log: a refused call is a missing grant to fix in infra/.
      onDenial: (d) => {
        terminal.note(`local IAM: ${d.principal} may not ${d.action} on ${d.resource} (the deployed role would be refused too)`);
        terminal.serviceLog(JSON.stringify({ level: 'WARN', message: LOCAL_IAM_DENIED, service: 'local-iam', ...d, timestamp: new Date().toISOString() }));
      },
    });
    stops.push(() => aws.stop());
    /** What EventBridge delivers on AWS: the execution's status change, to the rules' targets. */
    const statusChanged = async (executionArn: string, name: string, status: string) => {
      for (const target of definitionOf(synth).executionStatusTargets.filter((t) => t.statuses.includes(status))) {
        try {
          await invoke(target.handler, executionStatusChange(aws.stateMachineArn, executionArn, name, status));
        } catch (err) {
          terminal.note(`${target.handler} could not handle the end of ${name}: ${(err as Error).message}`);
        }
      }
    };
    // For the AWS CLI or SDK against local mode (e.g. StopExecution of a training by hand), with
    // local mode's own key (s3rver's fixed test pair).
    writeFileSync(join(dataDir, 'aws-endpoints.json'), JSON.stringify({ ...aws.env, STATE_MACHINE_ARN: aws.stateMachineArn }, null, 1) + '\n', { mode: 0o600 });
    await ensureTokens(aws, join(dataDir, SECRETS_FILE), secrets.secrets[SECRET_IDS.apiTokens]!, opts.secrets?.[SECRET_IDS.apiTokens]);

    functions = startFunctions({ config, synth, principals, aws, publicUrl: server.url, registryHost: images.registryHost, terminal, dataDir });
    stops.push(() => functions!.stop());
    // The upload sink writes as the trainer upload relay and reads as stage-weights (their roles on AWS).
    const as = (principal: string) => ({ ...aws, env: { ...aws.env, ...keysOf(aws.iam!.credentials(principal)) } });
    const storage = {
      s3: localClient(as('trainer-uploads'), S3Client, aws.env.AWS_ENDPOINT_URL_S3!, { forcePathStyle: true }),
      reader: localClient(as('stage-weights'), S3Client, aws.env.AWS_ENDPOINT_URL_S3!, { forcePathStyle: true }),
      build: localClient(as(BUILD_PRINCIPAL), S3Client, aws.env.AWS_ENDPOINT_URL_S3!, { forcePathStyle: true }),
      // A SageMaker job reads its channels and writes its model as the job role, as on AWS.
      job: sagemakerTrainers(config).length > 0 ? localClient(as(SAGEMAKER_JOB_PRINCIPAL), S3Client, aws.env.AWS_ENDPOINT_URL_S3!, { forcePathStyle: true }) : null,
      bucket: aws.bucket,
    };
    wired = { api: restApiOf(synth), functions, storage, awsEnv: aws.env };
    terminal.attachStore(new Store(DynamoDBDocumentClient.from(localClient(aws, DynamoDBClient, aws.env.AWS_ENDPOINT_URL_DYNAMODB!)), aws.table));
    await settleInterrupted(aws, invoke, terminal);
    for (const ex of aws.executions.interrupted) await statusChanged(ex.executionArn, ex.name, 'FAILED');
    // Written last: a client that finds the file finds a server that answers.
    const forget = writeLocalAddress(dataDir, { url: server.url, pid: process.pid, token: secrets.generated ? 'secrets.json' : 'DREAMBOOTH_API_TOKEN' });
    stops.push(async () => forget());

    return {
      url: server.url,
      token: secrets.token,
      tokenGenerated: secrets.generated,
      config,
      buildStrategy,
      image: { registry: images.registryHost, layoutDir: images.layoutDir },
      aws,
      functions: principals,
      terminal,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** cdk.json's configuration, the override merged over it; egress allows only loopback unless configured. */
function loadConfig(override: unknown): Config {
  const cdkJson = JSON.parse(readFileSync(join(ROOT, 'cdk.json'), 'utf8')) as { context?: { dreambooth?: unknown } };
  const userConfig = mergeConfig(cdkJson.context?.dreambooth ?? {}, override ?? {}) as Record<string, unknown>;
  const egress = (userConfig.egress ?? {}) as { allow?: string[] };
  return parseConfig(mergeConfig(userConfig, { egress: { allow: egress.allow ?? LOOPBACK } }), 'local configuration');
}

interface ImageStore {
  /** A registry's `host:port`, or null for an OCI layout on disk. */
  registryHost: string | null;
  layoutDir: string | null;
}

/** The image store: a registry (given, or Debian's started here) or an OCI layout on disk. */
async function startImageStore(opts: LocalModeOptions, dataDir: string, stops: Stops): Promise<ImageStore> {
  let registryHost = opts.registry ?? null;
  if (!registryHost && opts.registryMode !== 'none' && registryInstalled()) {
    const registry: LocalRegistry = await startRegistry(join(dataDir, 'registry'));
    stops.push(() => registry.stop());
    registryHost = registry.host;
  }
  return { registryHost, layoutDir: registryHost ? null : join(dataDir, 'images') };
}

const registryConfig = (images: ImageStore) =>
  images.registryHost ? { type: 'oci', host: images.registryHost, credentials_secret: 'local/registry' } : { type: 'layout', dir: images.layoutDir };

/**
 * The local stand-in for vanilla-template: a tiny Cog-style image made at start; the catalog entry
 * for it, and the default template unless `--config` names another (offline, the images of the
 * deployed catalog are out of reach).
 */
async function createLocalTemplate({ registryHost, layoutDir }: ImageStore, configuredDefault: string | undefined) {
  const repository = registryHost ? `${registryHost}/templates/vanilla-template` : `oci:${join(layoutDir!, 'templates', 'vanilla-template')}`;
  const store = registryHost ? new RegistryClient({ baseUrl: `http://${registryHost}` }) : new OciLayout(repository.slice(4));
  const digest = (await createDemoTemplate(store, registryHost ? 'templates/vanilla-template' : '', 'latest')).replace(/^sha256:/, '');
  return { default: configuredDefault ?? 'vanilla-template', catalog: { 'vanilla-template': { repository, digests: [digest] } } };
}

const localDefaultTemplate = (override: unknown): string | undefined =>
  (override as { templates?: { default?: string } } | undefined)?.templates?.default;

/**
 * Cog-protocol servers for each demo trainer without a URL; their URLs, by trainer name. The
 * demo trainer runs one prediction at a time, like a Cog server: `concurrency` of them make its
 * pool, one server per slot.
 */
async function startDemoTrainers(base: Config, serverUrl: string, stops: Stops, terminal: Terminal): Promise<Record<string, unknown>> {
  const trainers: Record<string, unknown> = {};
  for (const [name, t] of Object.entries(base.trainers)) {
    if (t.backend !== 'demo' || t.url || t.urls) continue;
    const urls: string[] = [];
    for (let i = 0; i < (t.concurrency ?? 1); i++) {
      const demo = await startDemoTrainerServer({
        stepsPerSecond: t.steps_per_second,
        uploadUrl: `${serverUrl}/v1/trainer-uploads/`,
        allow: base.egress.allow,
        log: (line) => terminal.trainer(line),
      });
      stops.push(() => demo.stop());
      urls.push(demo.url);
    }
    trainers[name] = { urls, concurrency: 1 };
  }
  return trainers;
}

/** A sagemaker trainer's job runs in a container on the local docker engine, or not at all: refused at submit. */
async function unavailableSageMakerTrainers(base: Config, terminal: Terminal): Promise<Record<string, unknown>> {
  const names = sagemakerTrainers(base).map(([name]) => name);
  if (names.length === 0 || (await dockerReachable())) return {};
  terminal.note('no docker engine reachable: sagemaker trainers are refused');
  const unavailable = 'local mode runs its SageMaker job in a container, and no docker engine is reachable (set DOCKER_HOST)';
  return Object.fromEntries(names.map((name) => [name, { unavailable }]));
}

/** The secrets the local Secrets Manager holds: local mode's own, the registry's, and --secrets. */
function localSecretValues(secrets: ReturnType<typeof loadLocalSecrets>, extra: Record<string, string> | undefined): Record<string, string> {
  return {
    'local/registry': JSON.stringify({ username: '', password: '' }),
    ...extra,
    // The tokens that come with --secrets join the local one through ensureTokens.
    ...secrets.secrets,
  };
}

/** Every Task state of the synthesized definition: a function invoked as its own principal, or the local build. */
function taskHandlersFor(
  synth: Synthesized,
  invoke: (fn: HandlerName, event: unknown) => Promise<unknown>,
  b: { strategy: BuildStrategy; registryHost: string | null; config: Config; terminal: Terminal; wired: () => Wired; dataDir: string; stopGraceSeconds?: number; iam: () => LocalAws['iam'] },
): Record<string, TaskHandler> {
  const tasks: Record<string, TaskHandler> = {};
  for (const [state, target] of Object.entries(definitionOf(synth).taskHandlers)) {
    if (target.kind === 'sagemaker') {
      tasks[state] = (input, ctx) =>
        runLocalTrainingJob(input, { s3: b.wired().storage.job!, workDir: join(b.dataDir, 'sagemaker-jobs'), log: (l) => b.terminal.trainer(l), stopGraceSeconds: b.stopGraceSeconds }, ctx.signal);
      continue;
    }
    if (target.kind === 'ecr-images') {
      tasks[state] = (input) => {
        checkIntegration(b.iam(), 'ecr:DescribeImages', ecrRepositoryArn((input as { RepositoryName: string }).RepositoryName), 'Ecr.AccessDeniedException');
        return describeLocalImages(input, b.registryHost);
      };
      continue;
    }
    if (target.kind === 'mirror') {
      tasks[state] = (input) => runLocalMirror(input, b.registryHost, (l) => b.terminal.build(l));
      continue;
    }
    tasks[state] =
      target.kind === 'codebuild'
        ? (input, ctx) => {
            // Step Functions calls StartBuild with the state machine's role; the build runs with the project's.
            checkIntegration(b.iam(), 'codebuild:StartBuild', `arn:aws:codebuild:${LOCAL_REGION}:${LOCAL_ACCOUNT}:project/${LOCAL_BUILD_PROJECT}`, 'CodeBuild.AWSCodeBuildException');
            return runLocalBuild(
              input,
              {
                strategy: b.strategy,
                registryHost: b.registryHost,
                s3: b.wired().storage.build,
                // The endpoints the docker path's AWS CLI shim calls, with the build project's credentials.
                env: { ...b.wired().awsEnv, ...keysOf(b.iam()!.credentials(BUILD_PRINCIPAL)) },
                log: (l) => b.terminal.build(l),
                limits: { maxEntries: b.config.limits.archive_max_entries, maxBytes: b.config.limits.archive_max_uncompressed_bytes },
              },
              ctx.signal,
            );
          }
        : (input) => {
            checkIntegration(b.iam(), 'lambda:InvokeFunction', lambdaArn(target.handler), 'Lambda.AWSLambdaException');
            return invoke(target.handler, lambdaEvent(target, input));
          };
  }
  return tasks;
}

/** The functions, each with the environment its declaration gives it and its own credentials. */
function startFunctions(o: {
  config: Config;
  synth: Synthesized;
  principals: LocalPrincipal[];
  aws: LocalAws;
  publicUrl: string;
  registryHost: string | null;
  terminal: Terminal;
  dataDir: string;
}): LocalFunctions {
  const deployed = new Set(o.synth.functions.map((f) => f.name));
  const values: EnvironmentValues = {
    table: o.aws.table,
    bucket: o.aws.bucket,
    stateMachineArn: o.aws.stateMachineArn,
    publicUrl: o.publicUrl,
    registryHost: o.registryHost ?? '',
    sagemakerJobPrefix: definitionOf(o.synth).sagemakerJobPrefix ?? '',
    sagemakerMirrors: definitionOf(o.synth).sagemakerMirrors ?? '{}',
    // Local mode's registry stands for ECR: the mirror step copies trainer images into it.
    trainerImageHost: o.registryHost ?? '',
    secretId: (s) => LOCAL_SECRET_IDS[s],
    functionName: (fn) => (deployed.has(fn) ? fn : undefined),
  };
  const principal = (fn: HandlerName) => o.principals.find((p) => p.fn === fn)!;
  return startLocalFunctions({
    config: o.config,
    names: o.synth.functions.map((f) => f.name),
    bundleDir: join(o.dataDir, 'functions'),
    environment: (fn) => localEnvironment(fn, { config: o.config, values, awsEnv: o.aws.env, principal: principal(fn) }),
    log: (line) => o.terminal.serviceLog(line),
  });
}

/** An SDK client of local mode's own (not a function's), pointed at a local service explicitly. */
function localClient<C>(aws: LocalAws, Client: new (config: Record<string, unknown>) => C, endpoint: string, extra: Record<string, unknown> = {}): C {
  return new Client({
    region: aws.env.AWS_REGION,
    endpoint,
    credentials: { accessKeyId: aws.env.AWS_ACCESS_KEY_ID!, secretAccessKey: aws.env.AWS_SECRET_ACCESS_KEY! },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...extra,
  });
}

function executionStatusChange(stateMachineArn: string, executionArn: string, name: string, status: string) {
  return {
    source: 'aws.states',
    'detail-type': 'Step Functions Execution Status Change',
    resources: [executionArn],
    detail: { executionArn, stateMachineArn, name, status },
  };
}

const keysOf = (c: { accessKeyId: string; secretAccessKey: string }) => ({ AWS_ACCESS_KEY_ID: c.accessKeyId, AWS_SECRET_ACCESS_KEY: c.secretAccessKey });

/**
 * The tokens list is kept in the data directory; the local token and those given with
 * --secrets are put into it, beside the others, at every start. It is written even when
 * nothing changes, so that `npm run token` (run without this process's environment) edits
 * the list this process serves, not one it derives anew.
 */
async function ensureTokens(aws: LocalAws, file: string, local: string, extra: string | undefined): Promise<void> {
  const entries = [...parseTokens(local), ...(extra ? parseTokens(extra) : [])];
  const kept = isPersisted(file, SECRET_IDS.apiTokens);
  const client = localClient(aws, SecretsManagerClient, aws.env.AWS_ENDPOINT_URL_SECRETS_MANAGER!);
  try {
    await editTokens(client, SECRET_IDS.apiTokens, (tokens) => upsertTokens(entries)(tokens) ?? (kept ? null : tokens));
  } finally {
    client.destroy();
  }
}

/**
 * `--build` wins; otherwise the configuration's `build.strategy`. A configured docker build
 * falls back to append when no engine is reachable (local mode must run without Docker); an
 * explicit `--build docker` does not.
 */
async function chooseBuild(
  wanted: BuildStrategy | 'auto',
  configured: BuildStrategy,
  registryHost: string | null,
  note: (line: string) => void,
): Promise<BuildStrategy> {
  const strategy = wanted === 'auto' ? configured : wanted;
  if (strategy === 'append') return 'append';
  if (registryHost !== null && (await dockerReachable())) return 'docker';
  if (wanted === 'docker') {
    throw new Error('--build docker needs a reachable docker engine (DOCKER_HOST or /var/run/docker.sock) and a registry');
  }
  note('build.strategy is docker, but no docker engine and registry are reachable: building with append');
  return 'append';
}

async function dockerReachable(): Promise<boolean> {
  if (!process.env.DOCKER_HOST && !existsSync('/var/run/docker.sock')) return false;
  try {
    await promisify(execFile)('docker', ['version', '--format', '{{.Server.Version}}'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Executions that were running when local mode last stopped cannot be resumed (their
 * in-memory state is gone): the training says so truthfully and its webhook is sent.
 */
async function settleInterrupted(aws: LocalAws, invoke: (fn: HandlerName, event: unknown) => Promise<unknown>, terminal: Terminal) {
  if (aws.executions.interrupted.length === 0) return;
  const record = (event: unknown) => invoke('record', event);
  const notify = (event: unknown) => invoke('notify', event);
  for (const ex of aws.executions.interrupted) {
    try {
      await record({
        action: 'failure',
        training_id: ex.name,
        error: { Error: 'Local.Interrupted', Cause: 'local mode stopped while this training ran; start a new training' },
      });
      await notify({ training_id: ex.name, event: 'completed' }).catch(() => undefined);
      terminal.note(`training ${ex.name} was interrupted by the last stop: marked failed`);
    } catch (e) {
      terminal.note(`could not settle interrupted training ${ex.name}: ${(e as Error).message}`);
    }
  }
}
