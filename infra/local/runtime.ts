/**
 * Local mode: the whole service on one machine, no AWS account. The state machine is the one
 * CDK synthesizes, run by aws-local-stepfunctions; every Task runs the same handler module as
 * on AWS; the handlers reach s3rver, dynalite and a small Step Functions / Secrets Manager /
 * Lambda endpoint through the SDK's AWS_ENDPOINT_URL_* variables.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { mergeConfig, parseConfig, resetRuntimeConfig, type Config } from '#shared/config';
import { ENV } from '#shared/env';
import { setLogSink } from '#shared/log';
import { OciLayout } from '#shared/oci/layout';
import { RegistryClient } from '#shared/oci/registry';
import { createDemoTemplate } from '#shared/oci/template';
import { startDemoTrainerServer } from '../../lambdas/demo-trainer/server.ts';
import { lambdaEvent, synthesizeDefinition } from '../asl.ts';
import { startLocalAws, type LocalAws, type TaskHandler } from './aws/index.ts';
import { runLocalBuild, type BuildStrategy } from './build.ts';
import { startRegistry, registryInstalled, type LocalRegistry } from './registry.ts';
import { loadLocalSecrets, SECRET_IDS } from './secrets.ts';
import { startLocalServer } from './server.ts';
import { Terminal } from './terminal.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LOOPBACK = ['127.0.0.0/8', '::1/128'];

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
}

export interface LocalMode {
  url: string;
  token: string;
  tokenGenerated: boolean;
  config: Config;
  buildStrategy: BuildStrategy;
  image: { registry: string | null; layoutDir: string | null };
  aws: LocalAws;
  terminal: Terminal;
  stop(): Promise<void>;
}

export async function startLocalMode(opts: LocalModeOptions): Promise<LocalMode> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const terminal = new Terminal(join(dataDir, 'service.log'), opts.quiet ?? false);
  setLogSink((line) => terminal.serviceLog(line));
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    stops.length = 0;
    terminal.close();
  };
  try {
    const cdkJson = JSON.parse(readFileSync(join(ROOT, 'cdk.json'), 'utf8')) as { context?: { dreambooth?: unknown } };
    const userConfig = mergeConfig(cdkJson.context?.dreambooth ?? {}, opts.configOverride ?? {}) as Record<string, unknown>;
    const egress = (userConfig.egress ?? {}) as { allow?: string[] };
    const base = parseConfig(mergeConfig(userConfig, { egress: { allow: egress.allow ?? LOOPBACK } }), 'local configuration');

    const secrets = loadLocalSecrets(dataDir, opts.token);

    // The image store: a registry (given, or Debian's started here) or an OCI layout on disk.
    let registry: LocalRegistry | null = null;
    let registryHost = opts.registry ?? null;
    if (!registryHost && opts.registryMode !== 'none' && registryInstalled()) {
      registry = await startRegistry(join(dataDir, 'registry'));
      stops.push(() => registry!.stop());
      registryHost = registry.host;
    }
    const layoutDir = registryHost ? null : join(dataDir, 'images');
    const buildStrategy = await chooseBuild(opts.build ?? 'auto', base.build.strategy, registryHost, (l) => terminal.note(l));

    // The local stand-in for vanilla-template: a tiny Cog-style image made at start.
    const templateRepo = registryHost ? `${registryHost}/templates/vanilla-template` : `oci:${join(layoutDir!, 'templates', 'vanilla-template')}`;
    const templateStore = registryHost ? new RegistryClient({ baseUrl: `http://${registryHost}` }) : new OciLayout(templateRepo.slice(4));
    const templateDigest = (await createDemoTemplate(templateStore, registryHost ? 'templates/vanilla-template' : '', 'latest')).replace(/^sha256:/, '');

    const s3 = new S3Client({ forcePathStyle: true });
    let handlers: Handlers | null = null;
    const server = await startLocalServer({
      port: opts.port,
      api: (e) => handlers!.api(e),
      callback: (e) => handlers!.callback(e),
      uploads: (e) => handlers!.uploads(e),
      upload: (e) => handlers!.upload(e),
      authorizer: (e) => handlers!.authorizer(e),
      s3,
      bucket: 'dreambooth-local',
    });
    stops.push(() => server.stop());

    const trainers: Record<string, unknown> = {};
    for (const [name, t] of Object.entries(base.trainers)) {
      if (t.backend !== 'demo' || t.url) continue;
      const demo = await startDemoTrainerServer({
        stepsPerSecond: t.steps_per_second,
        uploadUrl: `${server.url}/v1/trainer-uploads/`,
        allow: base.egress.allow,
        log: (line) => terminal.trainer(line),
      });
      stops.push(() => demo.stop());
      trainers[name] = { url: demo.url };
    }
    const config = parseConfig(
      mergeConfig(base, {
        trainers,
        registry: registryHost
          ? { type: 'oci', host: registryHost, credentials_secret: 'local/registry' }
          : { type: 'layout', dir: layoutDir },
        templates: { catalog: { 'vanilla-template': { repository: templateRepo, digests: [templateDigest] } } },
      }),
      'local configuration',
    );

    const { asl, taskHandlers } = synthesizeDefinition(config);
    const load = (name: string) => import(join(ROOT, 'lambdas', name, 'handler.ts')).then((m) => m.handler as (e: unknown) => Promise<unknown>);
    const tasks: Record<string, TaskHandler> = {};
    for (const [state, target] of Object.entries(taskHandlers)) {
      tasks[state] =
        target.kind === 'codebuild'
          ? (input, ctx) =>
              runLocalBuild(
                input,
                {
                  strategy: buildStrategy,
                  registryHost,
                  s3,
                  env: process.env,
                  log: (l) => terminal.build(l),
                  limits: { maxEntries: config.limits.archive_max_entries, maxBytes: config.limits.archive_max_uncompressed_bytes },
                },
                ctx.signal,
              )
          : async (input) => (await load(target.handler))(lambdaEvent(target, input));
    }
    const aws = await startLocalAws({
      dataDir,
      definition: asl,
      taskHandlers: tasks,
      secrets: {
        'local/registry': JSON.stringify({ username: '', password: '' }),
        ...opts.secrets,
        ...secrets.secrets,
        // More tokens (each with its owners) may come with --secrets, beside the local one.
        [SECRET_IDS.apiTokens]: mergeTokens(secrets.secrets[SECRET_IDS.apiTokens]!, opts.secrets?.[SECRET_IDS.apiTokens]),
      },
      lambdas: { notify: async (p) => (await load('notify'))(p) },
      onExecutionEvent: (e) => terminal.execution(e),
    });
    stops.push(() => aws.stop());

    Object.assign(process.env, aws.env, {
      [ENV.table]: aws.table,
      [ENV.bucket]: aws.bucket,
      [ENV.stateMachineArn]: aws.stateMachineArn,
      [ENV.publicUrl]: server.url,
      [ENV.apiTokensSecret]: SECRET_IDS.apiTokens,
      [ENV.webhookSecret]: SECRET_IDS.webhook,
      [ENV.callbackKeySecret]: SECRET_IDS.callbackKey,
      [ENV.notifyFunction]: 'notify',
      [ENV.registryHost]: registryHost ?? '',
      DREAMBOOTH_CONFIG: JSON.stringify(config),
    });
    resetRuntimeConfig();
    handlers = {
      api: (await load('api')) as Handlers['api'],
      callback: (await load('trainer-callback')) as Handlers['callback'],
      uploads: (await load('trainer-uploads')) as Handlers['uploads'],
      upload: (await load('upload')) as Handlers['upload'],
      authorizer: (await load('authorizer')) as Handlers['authorizer'],
    };
    terminal.attachStore();
    await settleInterrupted(aws, load, terminal);

    return {
      url: server.url,
      token: secrets.token,
      tokenGenerated: secrets.generated,
      config,
      buildStrategy,
      image: { registry: registryHost, layoutDir },
      aws,
      terminal,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

function mergeTokens(local: string, extra: string | undefined): string {
  if (!extra) return local;
  const tokens = [...(JSON.parse(local) as { tokens: unknown[] }).tokens, ...(JSON.parse(extra) as { tokens: unknown[] }).tokens];
  return JSON.stringify({ tokens });
}

type Handlers = {
  api: Parameters<typeof startLocalServer>[0]['api'];
  callback: Parameters<typeof startLocalServer>[0]['callback'];
  uploads: Parameters<typeof startLocalServer>[0]['uploads'];
  upload: Parameters<typeof startLocalServer>[0]['upload'];
  authorizer: Parameters<typeof startLocalServer>[0]['authorizer'];
};

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
async function settleInterrupted(aws: LocalAws, load: (n: string) => Promise<(e: unknown) => Promise<unknown>>, terminal: Terminal) {
  if (aws.executions.interrupted.length === 0) return;
  const record = await load('record');
  const notify = await load('notify');
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
