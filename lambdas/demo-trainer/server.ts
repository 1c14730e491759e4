/**
 * Serves the demo trainer's Cog protocol over HTTP on loopback (local mode). With a state file
 * it is durable as a Cog server on its own machine would be: it listens on the same port after
 * a restart (the trainings' pinned server stays right), and a run that died with the process is
 * owed and started again (./trainer.ts).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { DEMO_OPENAPI } from '#shared/trainers/demo/openapi';
import { DemoTrainer, type DemoOptions, type Reply } from './trainer.ts';

interface ServerState {
  port: number;
  /** The run in progress, if any. */
  run: string | null;
}

export interface DemoServerOptions extends DemoOptions {
  port?: number;
  stateFile?: string;
  /** Listens on the port wanted (0: any) or another; answers the port (local mode's keep their number across restarts). */
  listen?: (server: http.Server, wanted: number) => Promise<number>;
}

export async function startDemoTrainerServer(opts: DemoServerOptions): Promise<{ url: string; movedFrom: string | null; stop(): Promise<void> }> {
  const last = opts.stateFile ? readState(opts.stateFile) : null;
  let port = 0;
  // Once stopped, the run's fate is no longer this process's to record: it is owed on the next start.
  let stopped = false;
  const trainer = new DemoTrainer({
    ...opts,
    owed: last?.run ?? null,
    onRun: (run) => {
      if (opts.stateFile && !stopped) writeState(opts.stateFile, { port, run });
    },
  });
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let reply: Reply;
    const url = new URL(req.url ?? '/', 'http://x');
    let m: RegExpMatchArray | null;
    try {
      if (req.method === 'GET' && url.pathname === '/health-check') reply = trainer.health();
      // As a Cog server describes its inputs.
      else if (req.method === 'GET' && url.pathname === '/openapi.json') reply = { status: 200, body: DEMO_OPENAPI };
      else if (req.method === 'PUT' && (m = url.pathname.match(/^\/predictions\/([^/]+)$/))) {
        reply = trainer.put(decodeURIComponent(m[1]!), JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } else if (req.method === 'POST' && (m = url.pathname.match(/^\/predictions\/([^/]+)\/cancel$/))) {
        reply = trainer.cancel(decodeURIComponent(m[1]!));
      } else reply = { status: 404, body: { detail: 'Not Found' } };
    } catch (e) {
      reply = { status: 400, body: { detail: (e as Error).message } };
    }
    res.writeHead(reply.status, { 'content-type': 'application/json' }).end(JSON.stringify(reply.body));
  });
  // The port of the last run when it is free, else another.
  const wanted = opts.port ?? last?.port ?? 0;
  port = await (opts.listen ?? listenWanted)(server, wanted);
  if (opts.stateFile) writeState(opts.stateFile, { port, run: last?.run ?? null });
  return {
    url: `http://127.0.0.1:${port}`,
    // Its last port was taken: runs pinned to the old URL must follow it.
    movedFrom: last?.port && last.port !== port ? `http://127.0.0.1:${last.port}` : null,
    stop: () =>
      new Promise((r) => {
        stopped = true;
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The port wanted when it is free, else any. */
async function listenWanted(server: http.Server, wanted: number): Promise<number> {
  await listen(server, wanted).catch(() => listen(server, 0));
  return (server.address() as AddressInfo).port;
}

function listen(server: http.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (e: Error) => reject(e);
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', fail);
      resolve();
    });
  });
}

function readState(file: string): ServerState | null {
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as Partial<ServerState>;
    return { port: Number(s.port) || 0, run: typeof s.run === 'string' ? s.run : null };
  } catch {
    return null;
  }
}

function writeState(file: string, state: ServerState): void {
  mkdirSync(dirname(file), { recursive: true });
  // Write then rename: a crash never leaves half a file.
  writeFileSync(`${file}.tmp`, JSON.stringify(state));
  renameSync(`${file}.tmp`, file);
}
