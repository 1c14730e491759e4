/**
 * Starts local mode as a user does (`tsx infra/local/main.ts`, i.e. `npm start`) in its own
 * process and data directory, and a real webhook receiver on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { LOCAL_IAM_DENIED } from '#infra/local/names';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Local {
  url: string;
  token: string;
  dataDir: string;
  output: () => string;
  api: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; json: any }>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
  proc: ChildProcess;
}

export interface LocalOptions {
  build?: 'docker' | 'append';
  config?: unknown;
  /** `none` = OCI layout on disk. */
  registry?: string | 'none';
  dataDir?: string;
  token?: string;
  extraArgs?: string[];
  /** Secrets the configuration names (written to a file for --secrets). */
  secrets?: Record<string, string>;
  /** More environment for the local-mode process. */
  env?: Record<string, string>;
}

function deniedCalls(dataDir: string): string[] {
  const path = join(dataDir, 'service.log');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.includes(LOCAL_IAM_DENIED))
    .map((l) => {
      const d = JSON.parse(l) as { principal: string; action: string; resource: string };
      return `${d.principal}: ${d.action} on ${d.resource}`;
    });
}

export async function startLocal(opts: LocalOptions = {}): Promise<Local> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'dreambooth-e2e-'));
  const token = opts.token ?? `test-token-${Math.random().toString(36).slice(2)}`;
  // One process, as `npm start` ends up running: signals reach local mode itself.
  // PROF_DIR=<dir> writes a CPU profile of local mode (its thread and each worker's) there, for
  // finding where a bench's time goes (how the queue row's burst was traced).
  const args = [...(process.env.PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', process.env.PROF_DIR] : []), '--import', 'tsx', 'infra/local/main.ts', '--quiet'];
  if (opts.build) args.push('--build', opts.build);
  if (opts.registry === 'none') args.push('--no-registry');
  else if (opts.registry) args.push('--registry', opts.registry);
  if (opts.config) {
    const file = join(dataDir, 'test-config.json');
    writeFileSync(file, JSON.stringify(opts.config));
    args.push('--config', file);
  }
  if (opts.secrets) {
    const file = join(dataDir, 'test-secrets.json');
    writeFileSync(file, JSON.stringify(opts.secrets), { mode: 0o600 });
    args.push('--secrets', file);
  }
  if (opts.extraArgs) args.push(...opts.extraArgs);
  const proc = spawn(process.execPath, args, {
    env: { ...process.env, PORT: '0', DREAMBOOTH_DATA_DIR: dataDir, DREAMBOOTH_API_TOKEN: token, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`local mode did not start:\n${out}`)), 90_000);
    const check = () => {
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', check);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`local mode exited with ${code}:\n${out}`));
    });
  });
  const api: Local['api'] = async (method, path, body, headers = {}) => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, json };
  };
  const exit = (signal: NodeJS.Signals) =>
    new Promise<number | null>((resolve) => {
      if (proc.exitCode !== null) return resolve(proc.exitCode);
      const kill = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      proc.once('exit', (code) => {
        clearTimeout(kill);
        resolve(code);
      });
      proc.kill(signal);
    });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const code = await exit(signal);
    // A call the template's policies refuse fails the run: the deployed stack would refuse it too.
    const denied = deniedCalls(dataDir);
    if (denied.length) throw new Error(`local IAM refused calls (grant them in infra/):\n${denied.join('\n')}`);
    return code;
  };
  return { url, token, dataDir, output: () => out, api, stop, proc };
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface Hook {
  headers: http.IncomingHttpHeaders;
  body: string;
  url: string;
  json: any;
}

/** A webhook receiver; `respond` picks each answer's status (default 200). */
export async function startReceiver(respond: (n: number) => number = () => 200) {
  const hooks: Hook[] = [];
  const files = new Map<string, Buffer>();
  const fixed = new Map<string, number>();
  const perPath = new Map<string, number>();
  const delays = new Map<string, number>();
  let n = 0;
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const file = files.get(req.url ?? '');
    if (req.method === 'GET' && file) return void res.writeHead(200, { 'content-type': 'application/zip' }).end(file);
    const body = Buffer.concat(chunks).toString('utf8');
    const path = (req.url ?? '').split('?')[0]!;
    perPath.set(path, (perPath.get(path) ?? 0) + 1);
    const status = fixed.get(path) ?? respond(n++);
    const delay = delays.get(path);
    if (delay) await new Promise((r) => setTimeout(r, delay));
    if (status >= 300 && status < 400) res.setHeader('location', 'http://10.0.0.1/elsewhere');
    if (status >= 200 && status < 300) {
      let json: unknown = null;
      try {
        json = JSON.parse(body);
      } catch {
        /* keep raw */
      }
      hooks.push({ headers: req.headers, body, url: req.url ?? '', json });
    }
    res.writeHead(status).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    hooks,
    attempts: () => n,
    serve: (path: string, data: Buffer) => files.set(path, data),
    /** Always answer `status` on this path. */
    respondFor: (path: string, status: number) => fixed.set(path, status),
    attemptsFor: (path: string) => perPath.get(path) ?? 0,
    /** Answer this path only after `ms` (a receiver that times out). */
    delayFor: (path: string, ms: number) => delays.set(path, ms),
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
