/**
 * An endpoint's instance as a container on the local docker engine, as SageMaker hosting runs
 * one: `docker run <image> serve` with the model's Environment, ready once `GET /ping` answers
 * 200. SageMaker sends its requests to port 8080; here the container shares the host's network
 * (`--network host`, as local training jobs do: an engine started with `--bridge=none`, as CI's
 * is, publishes no ports) and the adapter is told a free loopback port through
 * DREAMBOOTH_SERVE_PORT and DREAMBOOTH_SERVE_HOST, which SageMaker never sets, so the image
 * keeps its contract. A container that exits before it answers (a model whose setup failed)
 * fails the endpoint at once with the end of its logs. Each container is labelled with the local
 * mode that started it (its data directory's id), so that a local mode killed with its endpoints
 * up finds their containers at its next start and removes them (removeOrphanedContainers):
 * endpoints live in memory and are made again on demand.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The label naming the local mode (its data directory's id) that started an endpoint's container. */
export const ENDPOINT_OWNER_LABEL = 'ai.dreambooth.local-endpoint-of';

/** A local mode's id for ENDPOINT_OWNER_LABEL: its data directory's, hashed. */
export const endpointOwnerOf = (dataDir: string) => createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 16);

export interface ContainerInstanceOptions {
  /** The starting local mode's id: the container's ENDPOINT_OWNER_LABEL. */
  owner?: string;
  log: (line: string) => void;
  /** How long the container may take to answer `/ping`. */
  startSeconds: number;
  /** The model's PrimaryContainer.Environment. */
  environment?: Record<string, string>;
  /** Seconds between SIGTERM and SIGKILL when the instance stops. @default 30 (SageMaker's) */
  stopGraceSeconds?: number;
}

/** A port free on loopback now (the kernel's choice), for the container to listen on. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts the container and answers where it serves; throws with the endpoint's FailureReason when it cannot. */
export async function startContainerInstance(endpoint: string, image: string, opts: ContainerInstanceOptions): Promise<{ url: string; stop(): Promise<void>; ended: Promise<string> }> {
  const name = `sagemaker-${endpoint}-${randomBytes(4).toString('hex')}`.toLowerCase();
  const port = await freeLoopbackPort();
  const env: Record<string, string> = { ...opts.environment, DREAMBOOTH_SERVE_PORT: String(port), DREAMBOOTH_SERVE_HOST: '127.0.0.1' };
  // `-e NAME` alone: docker takes the value from its own environment, so no value (a model's
  // environment may hold a secret) appears on a command line.
  const envArgs = Object.keys(env).flatMap((k) => ['-e', k]);
  // No --rm: a container that exits early keeps its logs until the failure is told.
  const labels = opts.owner ? ['--label', `${ENDPOINT_OWNER_LABEL}=${opts.owner}`] : [];
  const args = ['run', '-d', '--name', name, '--network', 'host', ...labels, ...envArgs, image, 'serve'];
  try {
    await run('docker', args, { timeout: 600_000, env: { ...process.env, ...env } });
  } catch (e) {
    await run('docker', ['rm', '-f', name]).catch(() => undefined);
    throw new Error(`The container for '${image}' did not start: ${lastLine((e as { stderr?: string }).stderr ?? (e as Error).message)}`);
  }
  let stopping = false;
  const stop = async () => {
    stopping = true;
    await run('docker', ['stop', '--time', String(opts.stopGraceSeconds ?? 30), name]).catch(() => undefined);
    await run('docker', ['rm', '-f', name]).catch(() => undefined);
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    await untilPinged(name, url, opts.startSeconds);
    opts.log(`endpoint ${endpoint}: container ${name} serves ${image} on ${url}`);
    // A container that ends by itself (its adapter exits when the model server dies) is told, as
    // SageMaker's health check finds a dead instance; one this side stopped is not.
    const ended = new Promise<string>((resolve) => {
      void run('docker', ['wait', name]).then(
        ({ stdout }) => !stopping && resolve(`the container ${name} exited with status ${stdout.trim()}`),
        () => !stopping && resolve(`the container ${name} is gone`),
      );
    });
    return { url, stop, ended };
  } catch (e) {
    const logs = await run('docker', ['logs', '--tail', '20', name]).then((o) => `${o.stdout}${o.stderr}`, () => '');
    await stop();
    throw new Error(`The primary container for production variant AllTraffic did not pass the ping health check: ${(e as Error).message}${logs.trim() ? `. Its last log lines: ${tail(logs)}` : ''}`);
  }
}

/**
 * Removes the endpoint containers an earlier run of this local mode (`owner`) left behind, as a
 * killed local mode leaves them running; another local mode's are not touched. No docker engine:
 * nothing to remove. Returns how many were removed.
 */
export async function removeOrphanedContainers(owner: string, log: (line: string) => void): Promise<number> {
  // Bounded: endpoints wait for this, and an engine that does not answer must not hold them.
  const listed = await run('docker', ['ps', '-aq', '--filter', `label=${ENDPOINT_OWNER_LABEL}=${owner}`], { timeout: 30_000 }).then((o) => o.stdout.split('\n').filter(Boolean), () => []);
  if (!listed.length) return 0;
  await run('docker', ['rm', '-f', ...listed], { timeout: 60_000 }).catch((e: { stderr?: string }) => log(`could not remove an earlier run's endpoint containers: ${lastLine(e.stderr ?? '')}`));
  log(`removed ${listed.length} endpoint container(s) an earlier run left behind`);
  return listed.length;
}

/** Resolves once `/ping` answers 200; throws when the container exits first or the time is up. */
async function untilPinged(name: string, url: string, startSeconds: number): Promise<void> {
  const deadline = Date.now() + startSeconds * 1000;
  let said = '';
  for (let i = 0; ; i++) {
    const ping = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(2000) }).then(
      async (r) => ({ ok: r.ok, text: await r.text() }),
      () => undefined,
    );
    if (ping?.ok) return;
    if (ping) said = detailOf(ping.text) ?? said;
    // Every second, whether the container still runs (an adapter whose model failed exits).
    if (i % 4 === 0) {
      const state = await run('docker', ['inspect', '--format', '{{.State.Running}} {{.State.ExitCode}}', name]).then((o) => o.stdout.trim(), () => 'false ?');
      const [running, code] = state.split(' ');
      if (running !== 'true') throw new Error(`the container exited with status ${code}${said ? ` (${said})` : ''}`);
    }
    if (Date.now() > deadline) throw new Error(`no answer within ${startSeconds} s${said ? ` (${said})` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const detailOf = (text: string): string | undefined => {
  try {
    const detail = (JSON.parse(text) as { detail?: unknown }).detail;
    return typeof detail === 'string' ? detail : undefined;
  } catch {
    return undefined;
  }
};

const lastLine = (text: string) => text.trim().split('\n').pop() ?? '';
const tail = (text: string) => text.trim().split('\n').slice(-5).join(' | ');
