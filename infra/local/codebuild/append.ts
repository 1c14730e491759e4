/**
 * The append strategy runs the code CodeBuild runs (codebuild/build-image) in a worker thread, as
 * CodeBuild runs it on a machine of its own: a build reading 512 MiB back from local S3 then
 * neither holds local mode's event loop (the API, the state machine) nor shares its heap, whose
 * garbage collections it made longer (bench: job end → version, 2.9 s → 2.4 s median). A stop
 * ends the worker, so a cancelled training's build stops at once. One worker is kept warm: a
 * build never waits for one to load.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { build, stop as stopEsbuild } from 'esbuild';
import { buildImageOptions } from '../../constructs/build.ts';
import { plainWorkerFlags } from '../worker-flags.ts';
import type { AppendJob, AppendMessage } from './build-worker.ts';

export interface AppendBuildOptions {
  /** `127.0.0.1:<port>` of the local registry, or null for OCI layouts on disk. */
  registryHost: string | null;
  s3: S3Client;
  log: (line: string) => void;
  /** Caps checked on the bytes really read from the archive, not on its headers. */
  limits: { maxEntries: number; maxBytes: number };
}

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

let bundled: Promise<string> | null = null;

/**
 * The worker runs ./build-worker.ts bundled into one file (about 0.25 s, once per
 * process), as CodeBuild runs the bundled build-image script: a worker thread does not take
 * the module hooks that load TypeScript (tsx's under `npm start`, the test runner's). Bundled
 * asynchronously: a synchronous build held local mode's thread for a second.
 */
function workerScript(): Promise<string> {
  if (!bundled) {
    const dir = mkdtempSync(join(tmpdir(), 'dreambooth-build-worker-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const options = buildImageOptions(dir, 'infra/local/codebuild/build-worker.ts', 'build-worker.mjs');
    const built = build(options).then(() => options.outfile!);
    built.catch(() => bundled === built && (bundled = null));
    bundled = built;
  }
  return bundled;
}

async function spawnWorker(): Promise<Worker> {
  const worker = new Worker(await workerScript(), { execArgv: plainWorkerFlags() });
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

/**
 * Once local mode serves, the append build's worker loads (the first build then starts at once);
 * then esbuild's service ends, idle from here on (the function bundles and the worker's are
 * built) where it held 80 MB. A later bundling starts it again.
 */
export function warmUp(append: boolean, note: (line: string) => void): void {
  const loaded = append ? appendWorkers.ready().then(() => undefined) : Promise.resolve();
  void loaded.catch((e: Error) => note(`the build worker did not start: ${e.message}`)).finally(() => stopEsbuild());
}

export async function appendBuild(env: Record<string, string>, opts: AppendBuildOptions, signal: AbortSignal): Promise<Record<string, string>> {
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
