/**
 * The Cog backend against a real HTTP server that answers as Cog 0.9's server does
 * (health-check states, idempotent PUT, 409 when busy with another id, 422 pydantic details).
 */
import type http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CogTrainer } from '#shared/trainers/cog/trainer';
import type { Run } from '#shared/trainers/index';
import { sendJson, startServer, type SeenRequest, type TestServer } from '#test-helpers/aws-local';

/** What the fake Cog server does; each test sets the parts it needs. */
interface CogBehaviour {
  health: string;
  /** The prediction it runs, if busy. */
  running: { id: string; status: string; logs: string } | null;
  /** Overrides the PUT answer. */
  put?: (req: SeenRequest, res: http.ServerResponse) => void;
  cancelStatus: number;
}

let cog: CogBehaviour;
let server: TestServer;

function answer(req: SeenRequest, res: http.ServerResponse) {
  const path = req.url.split('?')[0]!;
  if (req.method === 'GET' && path === '/health-check') return sendJson(res, 200, { status: cog.health, setup: {} });
  const put = path.match(/^\/predictions\/([^/]+)$/);
  if (req.method === 'PUT' && put) {
    if (cog.put) return cog.put(req, res);
    // Like Cog's pydantic model: the body is validated before the id is looked at.
    if (!/^https?:\/\/./.test(JSON.parse(req.body).webhook ?? 'http://x')) {
      return sendJson(res, 422, { detail: [{ loc: ['body', 'webhook'], msg: 'ensure this value has at least 1 characters' }] });
    }
    const id = decodeURIComponent(put[1]!);
    if (cog.running && cog.running.id !== id) return sendJson(res, 409, { detail: 'Already running a prediction' });
    cog.running ??= { id, status: 'processing', logs: '' };
    cog.health = 'BUSY';
    return sendJson(res, 202, { input: JSON.parse(req.body).input, output: null, ...cog.running });
  }
  if (req.method === 'POST' && /^\/predictions\/[^/]+\/cancel$/.test(path)) return sendJson(res, cog.cancelStatus, {});
  sendJson(res, 404, { detail: 'Not Found' });
}

beforeAll(async () => {
  server = await startServer(answer);
});
afterAll(() => server.close());
afterEach(() => {
  server.requests.length = 0;
});

const fresh = (over: Partial<CogBehaviour> = {}): CogBehaviour => (cog = { health: 'READY', running: null, cancelStatus: 200, ...over });
const trainer = (url = server.url) => new CogTrainer({ url, allow: ['127.0.0.0/8'], timeoutMs: 5_000 });
const run = (over: Partial<Run> = {}): Run => ({
  trainingId: 'abcdefghijklmnopqrstuvwxyz',
  runId: 'db-abcdefghijklmnopqrstuvwxyz',
  input: { instance_prompt: 'sks dog', max_train_steps: 10 },
  callbackUrl: 'http://127.0.0.1:9/api/v1/callbacks/abcdefghijklmnopqrstuvwxyz?secret=s3cr3t',
  ...over,
});
const errorOf = (p: Promise<unknown>) => p.then(() => new Error('no error'), (e: Error) => e);

describe('cog start', () => {
  it('checks health, then PUTs the run async with our callback as webhook', async () => {
    fresh();
    const state = await trainer().start(run());

    expect(state).toMatchObject({ status: 'processing', runId: run().runId });
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      'GET /health-check',
      `PUT /predictions/${run().runId}`,
    ]);
    const put = server.requests[1]!;
    expect(put.headers.prefer).toBe('respond-async');
    expect(put.headers['content-type']).toBe('application/json');
    const body = JSON.parse(put.body);
    expect(body.webhook).toBe(run().callbackUrl);
    expect(new URL(body.webhook).searchParams.get('secret')).toBe('s3cr3t');
    expect(body.input).toEqual(run().input);
    expect(body.webhook_events_filter).toEqual(expect.arrayContaining(['start', 'logs', 'completed']));
  });

  it('keeps a path prefix of the configured URL', async () => {
    fresh({ put: (_req, res) => sendJson(res, 202, { id: run().runId, status: 'processing' }) });
    await errorOf(trainer(`${server.url}/cog/`).start(run()));
    expect(server.requests[0]!.url).toBe('/cog/health-check');
  });

  it('409 (busy with another prediction) is TrainerBusy', async () => {
    fresh({ health: 'BUSY', running: { id: 'someone-else', status: 'processing', logs: '' } });
    const err = await errorOf(trainer().start(run()));
    expect(err.name).toBe('TrainerBusy');
  });

  it('422 with a pydantic detail list is TrainerFailed naming the field', async () => {
    fresh({
      put: (_req, res) =>
        sendJson(res, 422, {
          detail: [{ loc: ['body', 'input', 'max_train_steps'], msg: 'value is not a valid integer', type: 'type_error.integer' }],
        }),
    });
    const err = await errorOf(trainer().start(run()));
    expect(err.name).toBe('TrainerFailed');
    expect(err.message).toContain('input.max_train_steps: value is not a valid integer');
  });

  it('health STARTING is transient and nothing is PUT', async () => {
    fresh({ health: 'STARTING' });
    const err = await errorOf(trainer().start(run()));
    expect(err.name).toBe('TransientError');
    expect(server.requests.map((r) => r.method)).toEqual(['GET']);
  });

  it('SETUP_FAILED is a permanent failure', async () => {
    fresh({ health: 'SETUP_FAILED' });
    expect((await errorOf(trainer().start(run()))).name).toBe('TrainerFailed');
  });

  it('an unreachable server is transient', async () => {
    const gone = await startServer((_req, res) => res.end());
    const url = gone.url;
    await gone.close();
    const err = await errorOf(trainer(url).start(run()));
    expect(err.name).toBe('TransientError');
    expect(err.message).toMatch(/not reachable/);
  });

  it('a 5xx PUT is transient', async () => {
    fresh({ put: (_req, res) => sendJson(res, 503, { detail: 'overloaded' }) });
    expect((await errorOf(trainer().start(run()))).name).toBe('TransientError');
  });
});

describe('cog check', () => {
  it('READY means our run is over and its result lost', async () => {
    fresh();
    expect(await trainer().check(run())).toBe('lost');
    expect(server.requests.map((r) => r.method)).toEqual(['GET']);
  });

  it('BUSY with our id answers the run state (the PUT serves as a status check)', async () => {
    fresh({ health: 'BUSY', running: { id: run().runId, status: 'processing', logs: 'step 3/10' } });
    const state = await trainer().check(run());
    expect(state).toMatchObject({ status: 'processing', logs: 'step 3/10' });
    expect(server.requests.at(-1)!.method).toBe('PUT');
  });

  it('BUSY with another id (409) means lost', async () => {
    fresh({ health: 'BUSY', running: { id: 'someone-else', status: 'processing', logs: '' } });
    expect(await trainer().check(run())).toBe('lost');
  });
});

describe('cog cancel', () => {
  it('POSTs the cancel route of the run', async () => {
    fresh();
    await trainer().cancel(run().runId);
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual([`POST /predictions/${run().runId}/cancel`]);
  });

  it('tolerates 404 (unknown or finished)', async () => {
    fresh({ cancelStatus: 404 });
    await expect(trainer().cancel(run().runId)).resolves.toBeUndefined();
  });

  it('a 5xx cancel is transient', async () => {
    fresh({ cancelStatus: 500 });
    expect((await errorOf(trainer().cancel(run().runId))).name).toBe('TransientError');
  });
});
