/**
 * A Cog-protocol trainer whose every run misbehaves as its input asks (`input.fault`), serving
 * its outputs itself. Several runs may be in flight; health-check says BUSY while any runs.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { outputZip } from '#lambdas/demo-trainer/trainer';

/** `zip:<key>` serves zips[key] as output.zip; `file:<key>` serves zips[key] under the name <key>. */
export type Fault = 'ok' | 'silent' | 'fail' | 'output-404' | 'truncated' | 'slow-output' | `zip:${string}` | `file:${string}`;

interface Run {
  id: string;
  fault: Fault;
  webhook: string;
  status: string;
  canceled: boolean;
}

export async function startFaultyTrainer(zips: Record<string, Buffer>) {
  const runs = new Map<string, Run>();
  const canceled: string[] = [];
  const good = await outputZip({ trainer: 'faulty' });
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'http://x');
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    let m: RegExpMatchArray | null;
    if (url.pathname === '/health-check') {
      const busy = [...runs.values()].some((r) => r.status === 'processing');
      return json(200, { status: busy ? 'BUSY' : 'READY' });
    }
    if (req.method === 'PUT' && (m = url.pathname.match(/^\/predictions\/(.+)$/))) {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const existing = runs.get(m[1]!);
      if (existing && existing.status === 'processing') return json(202, { id: existing.id, status: 'processing', output: null, logs: '' });
      const run: Run = { id: m[1]!, fault: (body.input.fault ?? 'ok') as Fault, webhook: body.webhook, status: 'processing', canceled: false };
      runs.set(run.id, run);
      setTimeout(() => void play(run), 100);
      return json(202, { id: run.id, status: 'processing', output: null, logs: '' });
    }
    if (req.method === 'POST' && (m = url.pathname.match(/^\/predictions\/(.+)\/cancel$/))) {
      const run = runs.get(m[1]!);
      if (run?.status !== 'processing') return json(404, { detail: 'not found' });
      run.canceled = true;
      canceled.push(run.id);
      return json(200, {});
    }
    if (req.method === 'GET' && (m = url.pathname.match(/^\/outputs\/([^/]+)\/(.+)$/))) return serveOutput(res, runs.get(m[1]!), m[2]!);
    json(404, { detail: 'Not Found' });
  });

  async function serveOutput(res: http.ServerResponse, run: Run | undefined, name: string) {
    if (!run || run.fault === 'output-404') return res.writeHead(404).end();
    if (run.fault === 'truncated') {
      res.writeHead(200, { 'content-length': String(good.length + 5000), 'content-type': 'application/zip' });
      res.write(good);
      return setTimeout(() => res.destroy(), 50);
    }
    if (run.fault === 'slow-output') {
      res.writeHead(200, { 'content-length': String(good.length), 'content-type': 'application/zip' });
      for (let i = 0; i < good.length && !res.destroyed; i += 1024) {
        res.write(good.subarray(i, i + 1024));
        await new Promise((r) => setTimeout(r, 100));
      }
      return res.end();
    }
    const named = /^(zip|file):/.test(run.fault) ? run.fault.slice(run.fault.indexOf(':') + 1) : null;
    const data = named ? zips[named] : good;
    res.writeHead(200, { 'content-type': 'application/zip', 'content-length': String(data!.length) }).end(data);
    void name;
  }

  async function hook(run: Run, body: Record<string, unknown>) {
    await fetch(run.webhook, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: run.id, ...body }) }).catch(() => undefined);
  }

  async function play(run: Run) {
    await hook(run, { status: 'processing', logs: 'starting\n' });
    if (run.fault === 'silent') return; // never calls back again; stays BUSY
    if (run.fault === 'slow-output' || run.fault === 'ok') await new Promise((r) => setTimeout(r, 300));
    if (run.canceled) {
      run.status = 'canceled';
      return hook(run, { status: 'canceled', logs: 'starting\ncanceled\n' });
    }
    if (run.fault === 'fail') {
      run.status = 'failed';
      return hook(run, { status: 'failed', error: 'CUDA out of memory', logs: 'starting\nboom\n' });
    }
    run.status = 'succeeded';
    const file = run.fault.startsWith('file:') ? run.fault.slice(5) : 'output.zip';
    await hook(run, { status: 'succeeded', output: `${base}/outputs/${run.id}/${file}`, logs: 'starting\ndone\n', metrics: { predict_time: 1.5 } });
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url: base, canceled, files: zips, stop: () => new Promise<void>((r) => server.close(() => r())) };
}
