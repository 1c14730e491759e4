/**
 * Ports that outlive a restart. Trainings hold URLs naming local mode's ports — the API's
 * callback route, a demo trainer server a run is pinned to, the registry in every image name —
 * so each listener takes its last port back. Its first port is picked below the kernel's
 * ephemeral range: that range is where outgoing connections and `listen(0)` take their ports,
 * so one of them may hold a killed local mode's port when it starts again, while a port below it
 * is only ever taken by a listener that asks for it by number.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/** A listener that could not have its last port back: its old URL and its new one. */
export interface MovedServer {
  from: string;
  to: string;
}

/** Where the first ports are picked: this many ports below the ephemeral range. */
const BAND = 12_000;
const PICKS = 40;

/** The kernel's ephemeral port range (Linux); the IANA range where it cannot be read. */
export function ephemeralRange(file = '/proc/sys/net/ipv4/ip_local_port_range'): [number, number] {
  try {
    const [low, high] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    if (low && high && low <= high) return [low, high];
  } catch {
    /* not Linux */
  }
  return [49152, 65535];
}

/** Listens on `port` on loopback; false when it is taken. */
export function listenOn(server: Server, port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const fail = (e: NodeJS.ErrnoException) => {
      server.off('listening', done);
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES') resolve(false);
      else reject(e);
    };
    const done = () => {
      server.off('error', fail);
      resolve(true);
    };
    server.once('error', fail).once('listening', done);
    server.listen(port, '127.0.0.1');
  });
}

/**
 * Listens on `last` when it is free (a killed process's listener, as a registry that dies with
 * local mode, may take a moment to go: two seconds of tries), else on a free port below the
 * ephemeral range, else on any; answers the port.
 */
export async function listenSticky(server: Server, last: number): Promise<number> {
  for (let i = 0; last && i < 20; i++) {
    if (await listenOn(server, last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const port of stablePorts()) if (await listenOn(server, port)) return port;
  await listenOn(server, 0);
  return (server.address() as { port: number }).port;
}

/** A port for a child process to listen on (the registry), chosen as `listenSticky` would. */
export async function stickyPort(last: number): Promise<number> {
  const probe = createServer();
  const port = await listenSticky(probe, last);
  await new Promise((r) => probe.close(r));
  return port;
}

/** Random candidates in the band below the ephemeral range (none when the range starts too low). */
function stablePorts(): number[] {
  const [low] = ephemeralRange();
  const from = Math.max(1024, low - BAND);
  if (from >= low) return [];
  return Array.from({ length: PICKS }, () => from + Math.floor(Math.random() * (low - from)));
}
