/**
 * A fake Replicate API on 127.0.0.1:0: predictions create/get/cancel, the webhook signing
 * secret, and token-protected output files. Each prediction "runs" in the background and sends
 * Standard Webhooks-signed `start`, `logs`, `output` and `completed` events (those its
 * `webhook_events_filter` asks for) to its webhook, as Replicate does.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { webhookHeaders } from '#shared/webhook-signing';
import { outputZip } from '#lambdas/demo-trainer/trainer';

/** What the next predictions do; read when a prediction is created. */
export interface FakeBehaviour {
  /** Pause before each event. */
  stepMs: number;
  /** The terminal webhook is never sent (a lost webhook); the prediction still finishes. */
  dropTerminalWebhook: boolean;
  /** The prediction fails with this error. */
  failWith: string | null;
  /** The prediction runs until canceled. */
  hold: boolean;
  /** How the output archive's URL is reported. */
  outputShape: 'string' | 'list' | 'object';
}

export interface FakePrediction {
  id: string;
  version: string;
  input: Record<string, unknown>;
  webhook: string | null;
  events: string[];
  status: 'starting' | 'processing' | 'succeeded' | 'failed' | 'canceled';
  logs: string;
  output: unknown;
  error: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  predict_time: number | null;
  behaviour: FakeBehaviour;
  done: Promise<void>;
}

export interface SentWebhook {
  predictionId: string;
  event: string;
  status: string;
  /** The receiver's answer (0: not reached). */
  answer: number;
}

export interface SeenCall {
  method: string;
  path: string;
  authorization: string | undefined;
  body: string;
}

export interface FakeReplicate {
  url: string;
  token: string;
  /** The account's webhook signing secret. */
  secret: string;
  behaviour: FakeBehaviour;
  calls: SeenCall[];
  predictions: Map<string, FakePrediction>;
  /** Model versions by `owner/name` (`GET /v1/models/{owner}/{name}/versions/{id}`). */
  versions: Map<string, { id: string; openapi_schema: unknown }>;
  webhooks: SentWebhook[];
  close(): Promise<void>;
}

const DEFAULTS: FakeBehaviour = { stepMs: 100, dropTerminalWebhook: false, failWith: null, hold: false, outputShape: 'string' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startFakeReplicate(opts: { token?: string; behaviour?: Partial<FakeBehaviour> } = {}): Promise<FakeReplicate> {
  const token = opts.token ?? `r8_${randomBytes(16).toString('hex')}`;
  const fake: FakeReplicate = {
    url: '',
    token,
    secret: `whsec_${randomBytes(24).toString('base64')}`,
    behaviour: { ...DEFAULTS, ...opts.behaviour },
    calls: [],
    predictions: new Map(),
    versions: new Map(),
    webhooks: [],
    close: async () => undefined,
  };
  const files = new Map<string, Buffer>();
  let closed = false;

  const view = (p: FakePrediction) => ({
    id: p.id,
    version: p.version,
    input: p.input,
    logs: p.logs,
    output: p.output,
    error: p.error,
    status: p.status,
    created_at: p.created_at,
    started_at: p.started_at,
    completed_at: p.completed_at,
    metrics: p.predict_time === null ? {} : { predict_time: p.predict_time },
    urls: { get: `${fake.url}/v1/predictions/${p.id}`, cancel: `${fake.url}/v1/predictions/${p.id}/cancel` },
  });

  async function send(p: FakePrediction, event: string): Promise<void> {
    if (!p.webhook || !p.events.includes(event) || closed) return;
    const body = JSON.stringify(view(p));
    let answer = 0;
    try {
      const res = await fetch(p.webhook, { method: 'POST', headers: webhookHeaders(fake.secret, `msg_${randomBytes(12).toString('hex')}`, body), body });
      answer = res.status;
      await res.arrayBuffer();
    } catch {
      /* recorded as not reached */
    }
    fake.webhooks.push({ predictionId: p.id, event, status: p.status, answer });
  }

  async function run(p: FakePrediction): Promise<void> {
    const b = p.behaviour;
    const started = Date.now();
    await sleep(b.stepMs);
    if (p.status === 'starting') {
      p.status = 'processing';
      p.started_at = new Date().toISOString();
      p.logs += 'Loading the base model\n';
      await send(p, 'start');
    }
    for (let step = 1; step <= 2 && p.status === 'processing'; step++) {
      await sleep(b.stepMs);
      p.logs += `Steps: ${step}/2\n`;
      await send(p, 'logs');
    }
    while (b.hold && p.status === 'processing' && !closed) await sleep(b.stepMs);
    if (p.status === 'processing') {
      if (b.failWith) {
        p.status = 'failed';
        p.error = b.failWith;
      } else {
        const file = `${fake.url}/v1/files/${p.id}/output.zip`;
        files.set(new URL(file).pathname, await outputZip(p.input));
        p.output = b.outputShape === 'string' ? file : b.outputShape === 'list' ? [`${fake.url}/v1/files/${p.id}/sample.png`, file] : { weights: file };
        await send(p, 'output');
        p.status = 'succeeded';
      }
    }
    p.completed_at ??= new Date().toISOString();
    p.predict_time = (Date.now() - started) / 1000;
    if (!b.dropTerminalWebhook) await send(p, 'completed');
  }

  function create(body: string): { status: number; body: unknown } {
    let req: { version?: unknown; input?: unknown; webhook?: unknown; webhook_events_filter?: unknown };
    try {
      req = JSON.parse(body);
    } catch {
      return { status: 400, body: { detail: 'body is not JSON', status: 400 } };
    }
    if (typeof req.version !== 'string' || !/^[0-9a-f]{64}$/.test(req.version)) {
      return { status: 422, body: { detail: '- version: Invalid version or not permitted', status: 422 } };
    }
    const p: FakePrediction = {
      id: randomBytes(13).toString('hex').slice(0, 26),
      version: req.version,
      input: (req.input ?? {}) as Record<string, unknown>,
      webhook: typeof req.webhook === 'string' ? req.webhook : null,
      events: Array.isArray(req.webhook_events_filter) ? (req.webhook_events_filter as string[]) : ['start', 'output', 'logs', 'completed'],
      status: 'starting',
      logs: '',
      output: null,
      error: null,
      created_at: new Date().toISOString(),
      started_at: null,
      completed_at: null,
      predict_time: null,
      behaviour: { ...fake.behaviour },
      done: Promise.resolve(),
    };
    fake.predictions.set(p.id, p);
    p.done = run(p).catch(() => undefined);
    return { status: 201, body: view(p) };
  }

  function answer(method: string, path: string, body: string): { status: number; body: unknown } | Buffer {
    if (method === 'GET' && path === '/v1/webhooks/default/secret') return { status: 200, body: { key: fake.secret } };
    if (method === 'POST' && path === '/v1/predictions') return create(body);
    const v = path.match(/^\/v1\/models\/([^/]+\/[^/]+)\/versions\/([^/]+)$/);
    if (method === 'GET' && v) {
      const version = fake.versions.get(v[1]!);
      return version && version.id === v[2] ? { status: 200, body: { ...version, cog_version: '0.9.26', created_at: new Date(0).toISOString() } } : { status: 404, body: { detail: 'Not found.', status: 404 } };
    }
    const file = files.get(path);
    if (method === 'GET' && file) return file;
    const m = path.match(/^\/v1\/predictions\/([^/]+)(\/cancel)?$/);
    const p = m ? fake.predictions.get(m[1]!) : undefined;
    if (!p) return { status: 404, body: { detail: 'Not found.', status: 404 } };
    if (method === 'GET' && !m![2]) return { status: 200, body: view(p) };
    if (method === 'POST' && m![2]) {
      if (p.status === 'starting' || p.status === 'processing') {
        p.status = 'canceled';
        p.completed_at = new Date().toISOString();
      }
      return { status: 200, body: view(p) };
    }
    return { status: 405, body: { detail: 'Method not allowed', status: 405 } };
  }

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const body = Buffer.concat(chunks).toString('utf8');
    fake.calls.push({ method: req.method ?? '', path, authorization: req.headers.authorization, body });
    // Everything, output files included, needs the token (as files on api.replicate.com do).
    if (req.headers.authorization !== `Bearer ${token}`) {
      return void res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ detail: 'Invalid token.', status: 401 }));
    }
    const out = answer(req.method ?? '', path, body);
    if (Buffer.isBuffer(out)) return void res.writeHead(200, { 'content-type': 'application/zip', 'content-length': out.length }).end(out);
    res.writeHead(out.status, { 'content-type': 'application/json' }).end(JSON.stringify(out.body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = async () => {
    closed = true;
    await Promise.all([...fake.predictions.values()].map((p) => p.done));
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return fake;
}
