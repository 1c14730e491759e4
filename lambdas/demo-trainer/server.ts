/** Serves the demo trainer's Cog protocol over HTTP on loopback (local mode). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEMO_OPENAPI } from '#shared/trainers/demo/openapi';
import { DemoTrainer, type DemoOptions, type Reply } from './trainer.ts';

export async function startDemoTrainerServer(opts: DemoOptions & { port?: number }): Promise<{ url: string; stop(): Promise<void> }> {
  const trainer = new DemoTrainer(opts);
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
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () => new Promise((r) => server.close(() => r())),
  };
}
