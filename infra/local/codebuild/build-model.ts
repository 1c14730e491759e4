/**
 * The CodeBuild step in local mode, both paths real:
 * - docker: a docker engine and a registry are reachable → run the commands of
 *   buildspecs/build-model.yml themselves with bash (an `aws` shim serves `aws s3 cp`);
 * - append: no daemon → build the same image without one: the template's layers stay where
 *   they are, one new layer holds `src/weights/…`, then config and manifest.
 * Either way the result has the shape of startBuild.sync's output, and a failed build throws
 * (as AWS fails the task) with the log tail in the cause.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { Worker } from 'node:worker_threads';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { bundleBuildImage } from '../constructs/build.ts';
import { StateError } from './aws/errors.ts';
import type { AppendJob, AppendMessage } from './build-worker.ts';
import { ecrWouldRefuse } from './registry.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUILDSPEC = join(ROOT, 'buildspecs', 'build-model.yml');
const SHIM_DIR = join(ROOT, 'infra', 'local', 'bin');

export type BuildStrategy = 'docker' | 'append';

export interface LocalBuildOptions {
  strategy: BuildStrategy;
  /** `127.0.0.1:<port>` of the local registry, or null for OCI layouts on disk. */
  registryHost: string | null;
  s3: S3Client;
  /** Extra environment of the docker path (AWS endpoints for the shim, DOCKER_HOST). */
  env: Record<string, string | undefined>;
  log: (line: string) => void;
  /** Caps checked on the bytes really read from the archive, not on its headers. */
  limits: { maxEntries: number; maxBytes: number };
}

interface StartBuildInput {
  ProjectName?: string;
  EnvironmentVariablesOverride?: { Name: string; Value: string; Type?: string }[];
}

export class BuildFailed extends Error {
  constructor(message: string) {
    super(message);
    // The error name Step Functions reports for a failed startBuild.sync.
    this.name = 'States.TaskFailed';
  }
}

/**
 * CodeBuild refuses StartBuild when an environment variable passes 4,096 characters
 * (InvalidInputException "EnvironmentVariable should be at most 4096 characters"), which the
 * state machine sees as the task's error. Local mode refuses it too, counting the name as well.
 */
export const CODEBUILD_VARIABLE_MAX_CHARS = 4096;

function checkOverrides(overrides: NonNullable<StartBuildInput['EnvironmentVariablesOverride']>): void {
  for (const { Name, Value } of overrides) {
    const chars = Name.length + Value.length;
    if (chars > CODEBUILD_VARIABLE_MAX_CHARS) {
      throw new StateError(
        'CodeBuild.InvalidInputException',
        `EnvironmentVariable should be at most ${CODEBUILD_VARIABLE_MAX_CHARS} characters (${Name}: ${chars} with its name)`,
      );
    }
  }
}

export async function runLocalBuild(input: unknown, opts: LocalBuildOptions, signal: AbortSignal) {
  const overrides = (input as StartBuildInput).EnvironmentVariablesOverride ?? [];
  checkOverrides(overrides);
  const env = Object.fromEntries(overrides.map((v) => [v.Name, v.Value]));
  const id = `local:${env.TRAINING_ID ?? 'build'}-${Date.now().toString(36)}`;
  const started = Date.now();
  try {
    // Local mode may be stricter than AWS, never looser: what ECR refuses fails here too.
    const refused = ecrWouldRefuse(env.IMAGE_REPOSITORY ?? '');
    if (refused) throw Object.assign(new Error(refused), { phase: 'PRE_BUILD' });
    const exported = opts.strategy === 'docker' ? await dockerBuild(env, opts, signal) : await appendBuild(env, opts, signal);
    opts.log(`build ${env.TRAINING_ID}: pushed ${exported.IMAGE_URI} in ${((Date.now() - started) / 1000).toFixed(1)} s (${opts.strategy})`);
    return {
      Build: {
        Id: id,
        BuildStatus: 'SUCCEEDED',
        ExportedEnvironmentVariables: Object.entries(exported).map(([Name, Value]) => ({ Name, Value })),
      },
    };
  } catch (e) {
    const failure = e as Error & { phase?: string; tail?: string };
    const cause = {
      Build: { Id: id, BuildStatus: signal.aborted ? 'STOPPED' : 'FAILED', Phases: [{ PhaseType: failure.phase ?? 'BUILD', PhaseStatus: 'FAILED' }] },
      log_tail: failure.tail ?? failure.message,
    };
    throw new BuildFailed(JSON.stringify(cause));
  }
}

/**
 * The append strategy runs the code CodeBuild runs (lambdas/build-image) in a worker thread, as
 * CodeBuild runs it on a machine of its own: a build reading 512 MiB back from local S3 then
 * neither holds local mode's event loop (the API, the state machine) nor shares its heap, whose
 * garbage collections it made longer (bench: job end → version, 2.9 s → 2.4 s median). A stop
 * ends the worker, so a cancelled training's build stops at once. One worker is kept warm: a
 * build never waits for one to load.
 */
class AppendWorkers {
  private idle: Promise<Worker> | null = null;

  /** A loaded worker, ready for a build; the next one starts loading when this one is taken. */
  ready(): Promise<Worker> {
    if (!this.idle) {
      const spawned = spawnWorker();
      // A worker that failed to start is not kept: the next build tries a new one.
      spawned.catch(() => this.idle === spawned && (this.idle = null));
      this.idle = spawned;
    }
    return this.idle;
  }

  async run(job: AppendJob, log: (line: string) => void, signal: AbortSignal): Promise<Record<string, string>> {
    const taken = this.ready();
    this.idle = null;
    const worker = await taken;
    worker.ref();
    let reusable = false;
    let stop: () => void = () => {};
    try {
      return await new Promise<Record<string, string>>((resolve, reject) => {
        stop = () => reject(new Error('the build was stopped'));
        if (signal.aborted) return stop();
        signal.addEventListener('abort', stop, { once: true });
        worker.on('message', (m: AppendMessage) => {
          if (m.type === 'log') return log(m.line);
          reusable = true;
          if (m.type === 'done') resolve(m.exported);
          else reject(new Error(m.message));
        });
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`the build's worker exited with code ${code}`)));
        worker.postMessage(job);
      });
    } finally {
      signal.removeEventListener('abort', stop);
      // By name: the worker's own newListener hooks, which deliver its messages, must stay.
      for (const event of ['message', 'error', 'exit']) worker.removeAllListeners(event);
      if (reusable && !this.idle) {
        worker.unref();
        this.idle = Promise.resolve(worker);
      } else {
        void worker.terminate();
        void this.ready();
      }
    }
  }

  /** Ends the idle worker (local mode's stop). */
  async stop(): Promise<void> {
    const idle = this.idle;
    this.idle = null;
    if (idle) await (await idle).terminate();
  }
}

let bundled: string | null = null;

/**
 * The worker runs infra/local/build-worker.ts bundled into one file (about 0.25 s, once per
 * process), as CodeBuild runs the bundled build-image script: a worker thread does not inherit
 * the module hooks that load TypeScript (tsx's under `npm start`, the test runner's).
 */
function workerScript(): string {
  if (!bundled) {
    const dir = mkdtempSync(join(tmpdir(), 'dreambooth-build-worker-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    bundled = bundleBuildImage(dir, 'infra/local/build-worker.ts', 'build-worker.mjs');
  }
  return bundled;
}

function spawnWorker(): Promise<Worker> {
  const worker = new Worker(workerScript());
  // An idle worker must not keep local mode (or a test run) alive.
  worker.unref();
  return new Promise((resolve, reject) => {
    worker.once('message', () => {
      worker.removeListener('error', reject);
      resolve(worker);
    });
    worker.once('error', reject);
  });
}

export const appendWorkers = new AppendWorkers();

async function appendBuild(env: Record<string, string>, opts: LocalBuildOptions, signal: AbortSignal): Promise<Record<string, string>> {
  try {
    const s3 = await plainConfig(opts.s3);
    return await appendWorkers.run({ env, s3, registryHost: opts.registryHost, limits: opts.limits }, (l) => opts.log(`build ${env.TRAINING_ID}: ${l}`), signal);
  } catch (e) {
    throw Object.assign(new Error((e as Error).message), { phase: 'BUILD', tail: `append build failed: ${(e as Error).message}` });
  }
}

/** An S3 client's settings as plain data, for the worker to make its own client from. */
async function plainConfig(s3: S3Client): Promise<S3ClientConfig> {
  const endpoint = await s3.config.endpoint?.();
  const { accessKeyId, secretAccessKey, sessionToken } = await s3.config.credentials();
  return {
    region: await s3.config.region(),
    ...(endpoint ? { endpoint: `${endpoint.protocol}//${endpoint.hostname}${endpoint.port ? `:${endpoint.port}` : ''}${endpoint.path}` } : {}),
    forcePathStyle: s3.config.forcePathStyle,
    credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

/** Runs the buildspec's phases as CodeBuild does: one shell, phase after phase, exported variables read at the end. */
async function dockerBuild(env: Record<string, string>, opts: LocalBuildOptions, signal: AbortSignal): Promise<Record<string, string>> {
  const spec = parse(await readFile(BUILDSPEC, 'utf8')) as {
    env?: { 'exported-variables'?: string[] };
    phases: Record<string, { commands?: string[] }>;
  };
  const exported = spec.env?.['exported-variables'] ?? [];
  const dir = await mkdtemp(join(tmpdir(), 'dreambooth-build-'));
  const script = [
    'set -eo pipefail',
    ...['pre_build', 'build'].flatMap((p) => [`printf '%s' ${p.toUpperCase()} > "$__PHASE"`, ...(spec.phases[p]?.commands ?? [])]),
    `printf '%s' POST_BUILD > "$__PHASE"`,
    'export CODEBUILD_BUILD_SUCCEEDING=1',
    ...(spec.phases.post_build?.commands ?? []),
    ...exported.map((v) => `printf '%s' "$${v}" > "$__OUT/${v}"`),
  ].join('\n');
  await writeFile(join(dir, '.buildspec.sh'), script);
  const tail: string[] = [];
  try {
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn('bash', ['.buildspec.sh'], {
        cwd: dir,
        detached: true,
        env: {
          ...process.env,
          ...opts.env,
          ...env,
          REGISTRY_TYPE: 'oci',
          REGISTRY_HOST: opts.registryHost ?? '',
          REGISTRY_USERNAME: '',
          REGISTRY_PASSWORD: '',
          PATH: `${SHIM_DIR}:${process.env.PATH}`,
          __PHASE: join(dir, '.phase'),
          __OUT: dir,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const onAbort = () => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          /* already gone */
        }
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const collect = (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (!line.trim()) continue;
          tail.push(line);
          if (tail.length > 40) tail.shift();
          if (/^(Step \d+|#\d+ |Successfully|[0-9a-f]{12}: Pushed|digest:|Sending build context)/.test(line)) opts.log(`build ${env.TRAINING_ID}: ${line.trim()}`);
        }
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      child.on('error', reject);
      child.on('close', (c) => {
        signal.removeEventListener('abort', onAbort);
        resolve(c ?? 1);
      });
    });
    if (code !== 0 || signal.aborted) {
      const phase = await readFile(join(dir, '.phase'), 'utf8').catch(() => 'PRE_BUILD');
      throw Object.assign(new Error(`build failed in ${phase}`), { phase, tail: tail.join('\n') });
    }
    const out: Record<string, string> = {};
    for (const v of exported) out[v] = (await readFile(join(dir, v), 'utf8')).trim();
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
