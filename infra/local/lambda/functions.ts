/**
 * The functions in local mode, each as on AWS: its own environment and its own principal
 * (./environment.ts).
 *
 * Each function runs in its own worker thread, started on its first invocation (a cold start),
 * from its own bundle — the one `cdk synth` deploys, built with the same esbuild settings (names
 * kept for readable stacks): in-process handlers would share `process.env` and the SDK clients
 * the handler modules memoise, so one function's variables and credentials would leak into
 * every other's; an AsyncLocalStorage-scoped environment could scope the variables but not the
 * memoised clients. Bundles rather than the TypeScript sources: a worker loading the sources
 * through tsx spent about 2 s of CPU per cold start here, a bundle about 0.1 s.
 */
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Worker } from 'node:worker_threads';
import type { Config } from '#shared/config';
import type { HandlerName } from '../../constructs/function.ts';
import { plainWorkerFlags } from '../worker-flags.ts';
import { ensureBundles } from './bundles.ts';

/** What a function's thread says (./function-host.cjs). */
type HostMessage =
  | { type: 'ready' }
  | { type: 'result'; id: number; result: unknown }
  | { type: 'error'; id: number; error: { name: string; message: string; stack?: string } };

export interface LocalFunctions {
  /** Lambda Invoke: runs the function's handler with the event in its own environment. */
  invoke(fn: HandlerName, event: unknown): Promise<unknown>;
  /**
   * Settles when every bundle is built (or failed to build): until then an invocation waits,
   * while the Task state that made it counts down its timeout.
   */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export interface LocalFunctionsOptions {
  /** Baked into each bundle, as `cdk synth` bakes it. */
  config: Config;
  /** The functions of the deployment. */
  names: readonly HandlerName[];
  /** Where the bundles are written. */
  bundleDir: string;
  environment: (fn: HandlerName) => Record<string, string>;
  /** Each line a function writes to stdout or stderr (its logs). */
  log: (line: string) => void;
}

/** A function's execution environment: its worker thread and the invocations it has not answered. */
interface Host {
  worker: Worker;
  pending: Map<number, Pending>;
}

export function startLocalFunctions(opts: LocalFunctionsOptions): LocalFunctions {
  const hosts = new Map<HandlerName, Promise<Host>>();
  let seq = 0;
  let stopped = false;
  // Every bundle in one esbuild run, begun at once (unless the last start's are still good); a cold start waits for it.
  const bundled = ensureBundles(opts.names, opts.bundleDir, opts.config);
  bundled.catch(() => undefined);
  return {
    async invoke(fn, event) {
      if (stopped) throw new Error('local mode is stopping');
      if (!opts.names.includes(fn)) throw new Error(`no function ${fn} in this deployment`);
      if (!hosts.has(fn)) {
        const host = bundled.then(() => startHost(fn, opts, () => hosts.delete(fn)));
        // A failed cold start is retried by the next invocation.
        host.catch(() => hosts.delete(fn));
        hosts.set(fn, host);
      }
      const { worker, pending } = await hosts.get(fn)!;
      const id = ++seq;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, event });
      });
    },
    ready: () => bundled.then(() => undefined, () => undefined),
    async stop() {
      stopped = true;
      const started = await Promise.allSettled(hosts.values());
      await Promise.all(started.map((h) => (h.status === 'fulfilled' ? h.value.worker.terminate() : undefined)));
      hosts.clear();
    },
  };
}

/** A cold start: the function's worker, from its bundle, in its own environment; `exited` when it ends. */
function startHost(fn: HandlerName, opts: LocalFunctionsOptions, exited: () => void): Promise<Host> {
  return new Promise<Host>((resolve, reject) => {
    const pending = new Map<number, Pending>();
    const worker = new Worker(new URL('./function-host.cjs', import.meta.url), {
      env: opts.environment(fn),
      workerData: { bundle: join(opts.bundleDir, `${fn}.cjs`), functionName: fn },
      execArgv: plainWorkerFlags(),
      stdout: true,
      stderr: true,
    });
    for (const stream of [worker.stdout, worker.stderr]) createInterface({ input: stream }).on('line', opts.log);
    worker.on('message', (m: HostMessage) => {
      if (m.type === 'ready') return resolve({ worker, pending });
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.type === 'result') p?.resolve(m.result);
      else p?.reject(Object.assign(new Error(m.error.message), { name: m.error.name, stack: m.error.stack }));
    });
    worker.on('error', (e) => {
      reject(e);
      for (const p of pending.values()) p.reject(e);
    });
    worker.on('exit', (code) => {
      exited();
      for (const p of pending.values()) p.reject(new Error(`function ${fn} exited (${code}) during the invocation`));
    });
  });
}
