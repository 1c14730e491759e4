/**
 * The functions in local mode, each as on AWS: its own environment — exactly the variables its
 * declaration gives it (infra/functions.ts), the baked configuration, the local endpoints — and
 * its own principal (credentials derived from its name, a secret key kept in the data
 * directory), so that every SDK call a function makes is signed as that function and a local
 * service can tell, from the key id, whose call it is and which role's policies apply.
 *
 * Each function runs in its own worker thread, started on its first invocation (a cold start),
 * from its own bundle — the one `cdk synth` deploys, built with the same esbuild settings (names
 * kept for readable stacks): in-process handlers would share `process.env` and the SDK clients
 * the handler modules memoise, so one function's variables and credentials would leak into
 * every other's; an AsyncLocalStorage-scoped environment could scope the variables but not the
 * memoised clients. Bundles rather than the TypeScript sources: a worker loading the sources
 * through tsx spent about 2 s of CPU per cold start here, a bundle about 0.1 s.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Worker } from 'node:worker_threads';
import type { Config } from '#shared/config';
import { bakedEnv, bundleLambdas, type HandlerName } from '../constructs/function.ts';
import { environmentOf, type EnvironmentValues } from '../functions.ts';
import type { SynthesizedFunction } from '../template.ts';

/** What a function's thread says (./function-host.cjs). */
type HostMessage =
  | { type: 'ready' }
  | { type: 'result'; id: number; result: unknown }
  | { type: 'error'; id: number; error: { name: string; message: string; stack?: string } };

/** A function as a principal of the local services. */
export interface LocalPrincipal {
  fn: HandlerName;
  /** The function's role in the synthesized template: whose policies apply to its calls. */
  roleLogicalId: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** `trainer-callback` → `LOCALTRAINERCALLBACK`: who signed a request is readable in its signature. */
export const accessKeyIdOf = (fn: HandlerName) => `LOCAL${fn.toUpperCase().replace(/[^A-Z0-9]/g, '')}`;

/**
 * One principal per synthesized function. The secret keys persist in the data directory: URLs a
 * function presigned stay valid across a restart, as they do on AWS until they expire.
 */
export function localPrincipals(dataDir: string, functions: SynthesizedFunction[]): LocalPrincipal[] {
  const file = join(dataDir, 'principals.json');
  const keys = (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {}) as Record<string, string>;
  const principals = functions.map((f) => {
    keys[f.name] ??= randomBytes(30).toString('base64');
    return { fn: f.name, roleLogicalId: f.roleLogicalId, accessKeyId: accessKeyIdOf(f.name), secretAccessKey: keys[f.name]! };
  });
  writeFileSync(file, JSON.stringify(keys, null, 2) + '\n', { mode: 0o600 });
  return principals;
}

/**
 * Variables of the runtime itself, as Lambda sets its own (PATH, TZ, …); nothing of the caller's.
 * Below Node 22, main.ts also turns off the SDK's Node-version warning: each function's SDK would
 * print it again.
 */
const RUNTIME_VARIABLES = ['PATH', 'HOME', 'TMPDIR', 'TZ', 'LANG', 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'];

export interface LocalEnvironmentOptions {
  config: Config;
  values: EnvironmentValues;
  /** The local endpoints and SDK settings (`AWS_ENDPOINT_URL_*`, region, checksums), without credentials. */
  awsEnv: Record<string, string>;
  principal: LocalPrincipal;
}

/** One function's whole environment in local mode. */
export function localEnvironment(fn: HandlerName, o: LocalEnvironmentOptions): Record<string, string> {
  const runtime = Object.fromEntries(RUNTIME_VARIABLES.flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : [])));
  const { AWS_ACCESS_KEY_ID: _id, AWS_SECRET_ACCESS_KEY: _key, ...aws } = o.awsEnv;
  return {
    ...runtime,
    ...aws,
    AWS_LAMBDA_FUNCTION_NAME: fn,
    AWS_ACCESS_KEY_ID: o.principal.accessKeyId,
    AWS_SECRET_ACCESS_KEY: o.principal.secretAccessKey,
    ...environmentOf(fn, o.values),
    ...bakedEnv(o.config, fn),
  };
}

export interface LocalFunctions {
  /** Lambda Invoke: runs the function's handler with the event in its own environment. */
  invoke(fn: HandlerName, event: unknown): Promise<unknown>;
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

export function startLocalFunctions(opts: LocalFunctionsOptions): LocalFunctions {
  const hosts = new Map<HandlerName, Promise<{ worker: Worker; pending: Map<number, Pending> }>>();
  let seq = 0;
  let stopped = false;
  // Every bundle in one esbuild run, begun at once; a cold start waits for it.
  const bundled = bundleLambdas(opts.names, opts.bundleDir, opts.config);
  bundled.catch(() => undefined);

  const start = async (fn: HandlerName) => {
    const bundle = join(opts.bundleDir, `${fn}.cjs`);
    await bundled;
    return new Promise<{ worker: Worker; pending: Map<number, Pending> }>((resolve, reject) => {
      const pending = new Map<number, Pending>();
      const worker = new Worker(new URL('./function-host.cjs', import.meta.url), {
        env: opts.environment(fn),
        workerData: { bundle, functionName: fn },
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
        hosts.delete(fn);
        for (const p of pending.values()) p.reject(new Error(`function ${fn} exited (${code}) during the invocation`));
      });
    });
  };

  return {
    async invoke(fn, event) {
      if (stopped) throw new Error('local mode is stopping');
      if (!opts.names.includes(fn)) throw new Error(`no function ${fn} in this deployment`);
      if (!hosts.has(fn)) {
        const host = start(fn);
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
    async stop() {
      stopped = true;
      const started = await Promise.allSettled(hosts.values());
      await Promise.all(started.map((h) => (h.status === 'fulfilled' ? h.value.worker.terminate() : undefined)));
      hosts.clear();
    },
  };
}
