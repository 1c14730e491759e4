/**
 * Serves the demo template over HTTP on loopback (local mode): Cog's routes (`GET /health-check`,
 * `GET /openapi.json`, `POST /predictions`) for whatever speaks to a version's Cog image, and
 * SageMaker's (`GET /ping`, `POST /invocations`) for the local stand-in of an endpoint, so a
 * demo version's endpoint needs no docker engine.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DemoTemplate, type DemoTemplateOptions, type Reply } from './predictor.ts';

export async function startDemoTemplateServer(
  opts: DemoTemplateOptions & { port?: number },
): Promise<{ url: string; template: DemoTemplate; stop(): Promise<void> }> {
  const template = await DemoTemplate.start(opts);
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const reply = await route(template, req.method ?? 'GET', new URL(req.url ?? '/', 'http://x').pathname, Buffer.concat(chunks));
    res.writeHead(reply.status, { 'content-type': 'application/json' }).end(JSON.stringify(reply.body));
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    template,
    stop: () => new Promise((r) => server.close(() => r())),
  };
}

async function route(template: DemoTemplate, method: string, path: string, body: Buffer): Promise<Reply> {
  const call = `${method} ${path}`;
  if (call === 'GET /health-check') return template.health();
  if (call === 'GET /openapi.json') return { status: 200, body: template.openapi() };
  if (call === 'GET /ping') return { status: 200, body: { status: 'ready' } };
  if (call === 'POST /invocations') return template.invoke(body);
  if (call === 'POST /predictions') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8') || '{}');
    } catch (e) {
      // As FastAPI answers a body it cannot parse.
      return { status: 422, body: { detail: [{ loc: ['body'], msg: (e as Error).message, type: 'value_error.jsondecode' }] } };
    }
    return template.predict(parsed);
  }
  return { status: 404, body: { detail: 'Not Found' } };
}
