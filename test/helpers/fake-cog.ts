/**
 * A Cog 0.9-like trainer on loopback, behaving as the real Python server was observed to:
 * `/health-check` STARTING → READY → BUSY; `PUT /predictions/{id}` with `Prefer: respond-async`
 * answers 202 `processing`; another id while busy → 409; the same id while it runs → 202 with its
 * state; a finished id is forgotten (the same id again starts a new run); the start webhook says
 * `processing`; `logs` webhooks carry the whole log and may come out of order; the output is
 * PUT to `--upload-url` before the terminal webhook, which carries `metrics.predict_time` and
 * is retried (0, 0.2, 0.4 … s, 12 tries) while the server stays BUSY; cancel → 200 `{}` then a
 * `canceled` webhook; invalid input → 422 with a pydantic `detail` list; `GET /openapi.json`
 * describes the inputs as Cog does (`components.schemas.Input`).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeCogOptions {
  /** Cog's `--upload-url` (ends in `/`); settable later, since it may be known only after start. */
  uploadUrl?: string;
  /** The output file, PUT to the upload URL as `output.zip`. */
  output: () => Promise<Buffer> | Buffer;
  /** Required inputs (pydantic: "field required"). @default ['instance_prompt', 'class_prompt'] */
  required?: string[];
  /** Log lines, one `logs` webhook each. @default 5 */
  steps?: number;
  /** Each step's log line. @default `step <n>/<steps>\n` */
  logLine?: (step: number, steps: number) => string;
  /** Milliseconds per step. @default 20 */
  stepMs?: number;
  /** Answer 409 to this many prediction PUTs first, as if another client's run were going on. */
  busyFirst?: number;
  /** Deliver the logs webhooks newest first and the start event after them. */
  shuffleLogs?: boolean;
  /** The upload fails: v0.9 still reports `succeeded`, with `output: null`. */
  failUpload?: boolean;
  /** Milliseconds the server says STARTING after it listens. @default 0 */
  startingMs?: number;
  /** Cog's WEBHOOK_AUTH_TOKEN. */
  webhookAuthToken?: string;
}

interface Prediction {
  id: string;
  input: Record<string, unknown>;
  output: string | null;
  logs: string;
  error: string | null;
  status: 'processing' | 'succeeded' | 'failed' | 'canceled';
  created_at: string;
  started_at: string;
  completed_at: string | null;
  metrics: { predict_time?: number };
  webhook?: string;
  webhook_events_filter?: string[];
}

export interface FakeCog {
  url: string;
  options: FakeCogOptions;
  /** Every request, in order: `PUT /predictions/db-…`, `POST /predictions/db-…/cancel`, … */
  requests: string[];
  /** Resolves when no run is going on. */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startFakeCog(options: FakeCogOptions): Promise<FakeCog> {
  const requests: string[] = [];
  const listening = Date.now();
  let current: { p: Prediction; canceled: boolean; done: Promise<void> } | null = null;

  const health = () => {
    if (Date.now() - listening < (options.startingMs ?? 0)) return 'STARTING';
    return current || (options.busyFirst ?? 0) > 0 ? 'BUSY' : 'READY';
  };

  function put(id: string, body: { input?: unknown; webhook?: string; webhook_events_filter?: string[] }, prefer: string | undefined) {
    if (prefer !== 'respond-async') return { status: 400, body: { detail: 'this fake serves Prefer: respond-async only' } };
    if ((options.busyFirst ?? 0) > 0) {
      options.busyFirst!--;
      return { status: 409, body: { detail: 'Already running a prediction' } };
    }
    if (current) {
      return current.p.id === id ? { status: 202, body: current.p } : { status: 409, body: { detail: 'Already running a prediction' } };
    }
    const invalid = validate(body.input, options.required ?? ['instance_prompt', 'class_prompt']);
    if (invalid) return { status: 422, body: { detail: invalid } };
    const now = new Date().toISOString();
    const p: Prediction = {
      id,
      input: body.input as Record<string, unknown>,
      output: null,
      logs: '',
      error: null,
      status: 'processing',
      created_at: now,
      started_at: now,
      completed_at: null,
      metrics: {},
      webhook: body.webhook,
      webhook_events_filter: body.webhook_events_filter ?? ['start', 'output', 'logs', 'completed'],
    };
    const run = { p, canceled: false, done: Promise.resolve() };
    run.done = predict(run).finally(() => {
      current = null;
    });
    current = run;
    return { status: 202, body: { ...p } };
  }

  async function predict(run: { p: Prediction; canceled: boolean }) {
    const { p } = run;
    const t0 = Date.now();
    const snapshots: Prediction[] = [];
    for (let step = 1; step <= (options.steps ?? 5) && !run.canceled; step++) {
      await sleep(options.stepMs ?? 20);
      p.logs += (options.logLine ?? ((n, of) => `step ${n}/${of}\n`))(step, options.steps ?? 5);
      snapshots.push({ ...p });
    }
    if (options.shuffleLogs) {
      for (const s of snapshots.reverse()) void send(p, 'logs', s);
      await sleep(50);
      await send(p, 'start', { ...p, logs: '' });
    } else {
      await send(p, 'start', { ...p, logs: '' });
      for (const s of snapshots) await send(p, 'logs', s);
    }
    if (run.canceled) p.status = 'canceled';
    else {
      p.output = options.failUpload ? null : await upload(p);
      p.status = 'succeeded';
    }
    p.completed_at = new Date().toISOString();
    p.metrics = { predict_time: (Date.now() - t0) / 1000 };
    await sendTerminal(p);
  }

  async function upload(p: Prediction): Promise<string | null> {
    const target = `${options.uploadUrl ?? ''}output.zip`;
    try {
      const res = await fetch(target, {
        method: 'PUT',
        body: await options.output(),
        headers: { 'content-type': 'application/zip', 'x-prediction-id': p.id },
      });
      await res.arrayBuffer();
      if (!res.ok) return null;
      // Cog reports the Location (or the PUT URL) without its query string.
      const url = new URL(res.headers.get('location') ?? target);
      url.search = '';
      return url.toString();
    } catch {
      return null;
    }
  }

  /** Non-terminal events are sent once; terminal ones retried while the server stays BUSY. */
  async function send(p: Prediction, event: string, body: Prediction, attempts = 1): Promise<boolean> {
    if (!p.webhook || !p.webhook_events_filter!.includes(event)) return true;
    for (let i = 0; i < attempts; i++) {
      if (i > 0) await sleep(100 * 2 ** i);
      try {
        const res = await fetch(p.webhook, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(options.webhookAuthToken ? { authorization: `Bearer ${options.webhookAuthToken}` } : {}),
          },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        if (res.ok) return true;
      } catch {
        /* retried like the others */
      }
    }
    return false;
  }

  const sendTerminal = (p: Prediction) => send(p, 'completed', { ...p }, 12);

  function cancel(id: string) {
    if (!current || current.p.id !== id) return { status: 404, body: { detail: 'Not found' } };
    current.canceled = true;
    return { status: 200, body: {} };
  }

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const path = new URL(req.url ?? '/', 'http://cog').pathname;
    requests.push(`${req.method} ${path}`);
    let reply: { status: number; body: unknown };
    let m: RegExpMatchArray | null;
    if (req.method === 'GET' && path === '/health-check') reply = { status: 200, body: { status: health(), setup: { status: 'succeeded' } } };
    else if (req.method === 'GET' && path === '/openapi.json') reply = { status: 200, body: openapi(options.required ?? ['instance_prompt', 'class_prompt']) };
    else if (req.method === 'PUT' && (m = path.match(/^\/predictions\/([^/]+)$/))) {
      let body: Parameters<typeof put>[1];
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = {};
      }
      reply = put(decodeURIComponent(m[1]!), body, String(req.headers.prefer ?? ''));
    } else if (req.method === 'POST' && (m = path.match(/^\/predictions\/([^/]+)\/cancel$/))) reply = cancel(decodeURIComponent(m[1]!));
    else reply = { status: 404, body: { detail: 'Not Found' } };
    res.writeHead(reply.status, { 'content-type': 'application/json' }).end(JSON.stringify(reply.body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    options,
    requests,
    idle: async () => {
      while (current) await current.done;
    },
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Pydantic v1's 422 detail for a Cog input: missing fields and a non-integer max_train_steps. */
/** The inputs as Cog 0.9 describes them: the required strings, and max_train_steps an integer from 1. */
function openapi(required: string[]) {
  const properties: Record<string, unknown> = Object.fromEntries(required.map((f) => [f, { type: 'string', title: f }]));
  properties.max_train_steps = { type: 'integer', minimum: 1, default: 20 };
  return { openapi: '3.0.2', info: { title: 'Cog', version: '0.1.0' }, paths: {}, components: { schemas: { Input: { type: 'object', title: 'Input', required, properties } } } };
}

function validate(input: unknown, required: string[]) {
  if (typeof input !== 'object' || input === null) {
    return [{ loc: ['body', 'input'], msg: 'value is not a valid dict', type: 'type_error.dict' }];
  }
  const fields = input as Record<string, unknown>;
  const detail: { loc: string[]; msg: string; type: string }[] = required
    .filter((f) => !(f in fields))
    .map((f) => ({ loc: ['body', 'input', f], msg: 'field required', type: 'value_error.missing' }));
  if ('max_train_steps' in fields && !Number.isInteger(fields.max_train_steps)) {
    detail.push({ loc: ['body', 'input', 'max_train_steps'], msg: 'value is not a valid integer', type: 'type_error.integer' });
  }
  return detail.length ? detail : null;
}
