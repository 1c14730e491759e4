/**
 * serving/sagemaker_adapter.py by its contract, as SageMaker runs it (`<entrypoint> serve`, then
 * /ping and /invocations) but on a free port instead of 8080, against the Cog-protocol stand-in
 * (test/helpers/cog/server/http.py) started as `python3 -m cog.server.http`, exactly as the
 * adapter starts a real image's server.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '#test-helpers/paths';

const ADAPTER = join(ROOT, 'serving', 'sagemaker_adapter.py');
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface Adapter {
  url: string;
  child: ChildProcessWithoutNullStreams;
  output(): string;
  /** The adapter's exit status. */
  exited: Promise<number | null>;
  /** Its output streams closed too (a Cog server it left running would hold them open). */
  closed: Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const running: Adapter[] = [];
async function startAdapter(env: Record<string, string> = {}, args = ['serve']): Promise<Adapter> {
  const port = await freePort();
  const child = spawn('python3', [ADAPTER, ...args], {
    env: {
      ...process.env,
      DREAMBOOTH_SERVE_PORT: String(port),
      DREAMBOOTH_COG_COMMAND: 'python3 -m cog.server.http',
      PYTHONPATH: join(ROOT, 'test', 'helpers'),
      ...env,
    },
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c));
  child.stderr.on('data', (c: Buffer) => (output += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const adapter = { url: `http://127.0.0.1:${port}`, child, output: () => output, exited, closed };
  running.push(adapter);
  return adapter;
}

/** The pid of the Cog server the adapter started, from its log. */
function cogPid(adapter: Adapter): number | undefined {
  const m = adapter.output().match(/Cog server pid (\d+)/);
  return m ? Number(m[1]) : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops an adapter and, should it have left one behind, its Cog server. */
async function stop(a: Adapter): Promise<void> {
  if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGTERM');
  await a.exited;
  const pid = cogPid(a);
  if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
  await a.closed;
}

afterEach(async () => {
  for (const a of running.splice(0)) await stop(a);
});

/** The first answer the adapter gives, retrying while its port does not accept connections yet. */
async function firstAnswer(url: string, deadlineMs = 20_000): Promise<Response> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      return await fetch(url);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A response's JSON body, untyped as the tests read it. */
const json = (res: Response): Promise<any> => res.json();

/** Polls /ping until its answer is the one wanted, or fails at the deadline. */
async function pingUntil(adapter: Adapter, wanted: (status: number, body: any) => boolean, deadlineMs = 20_000): Promise<any> {
  const deadline = Date.now() + deadlineMs;
  let last = '';
  for (;;) {
    const res = await fetch(`${adapter.url}/ping`).catch(() => null);
    if (res) {
      const body = await json(res);
      if (wanted(res.status, body)) return body;
      last = `${res.status} ${JSON.stringify(body)}`;
    }
    if (Date.now() > deadline) throw new Error(`/ping did not answer as wanted in ${deadlineMs} ms; last ${last}; output:\n${adapter.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const ready = (status: number) => status === 200;

function invoke(adapter: Adapter, body: unknown): Promise<Response> {
  return fetch(`${adapter.url}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

describe('the SageMaker adapter starting', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("answers /ping 503 while the model's setup runs and 200 once Cog says READY", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'adapter-setup-'));
    dirs.push(dir);
    const setupDone = join(dir, 'setup-done');
    const adapter = await startAdapter({ FAKE_COG_SETUP_UNTIL: setupDone });
    const before = await firstAnswer(`${adapter.url}/ping`);
    expect(before.status).toBe(503);
    expect((await json(before)).detail).toBe('the model is starting');
    const early = await invoke(adapter, { input: { prompt: 'too early' } });
    expect(early.status).toBe(503);
    expect((await json(early)).detail).toBe('the model is starting');
    writeFileSync(setupDone, '');
    expect(await pingUntil(adapter, ready)).toEqual({ status: 'ready' });
  });

  it('answers /ping 503 with the setup logs when setup fails, then exits non-zero', async () => {
    const adapter = await startAdapter({ FAKE_COG_SETUP: 'fail' });
    const { detail } = await pingUntil(adapter, (status, body) => status === 503 && body.detail !== 'the model is starting');
    expect(detail).toContain("the model's setup failed (SETUP_FAILED)");
    expect(detail).toContain('RuntimeError: weights not found');
    expect(await adapter.exited).toBe(1);
    await adapter.closed;
    expect(adapter.output()).toContain('RuntimeError: weights not found');
  });

  it('refuses to run as anything but `serve`', async () => {
    const adapter = await startAdapter({}, ['train']);
    expect(await adapter.exited).toBe(2);
    await adapter.closed;
    expect(adapter.output()).toContain('usage: sagemaker_adapter.py [serve]');
  });
});

describe('the SageMaker adapter serving', () => {
  let adapter: Adapter;
  beforeAll(async () => {
    adapter = await startAdapter();
    await pingUntil(adapter, ready);
    // Kept for the whole block: the afterEach above stops only what a test started itself.
    running.splice(running.indexOf(adapter), 1);
  });
  afterAll(() => stop(adapter));

  it("answers an invocation with Cog's prediction, file outputs as data URIs, and logs its id but never its input", async () => {
    const res = await invoke(adapter, { id: 'pred-1', input: { prompt: 'a photo of cjw person on the moon', token_url: 'https://x.test/?sig=hunter2' } });
    expect(res.status).toBe(200);
    const prediction = await json(res);
    expect(prediction).toMatchObject({ id: 'pred-1', status: 'succeeded', error: null, logs: 'step 1/1\n' });
    expect(prediction.metrics.predict_time).toBeTypeOf('number');
    expect(prediction.output).toHaveLength(1);
    const [uri] = prediction.output as string[];
    expect(uri).toMatch(/^data:image\/png;base64,/);
    expect(Buffer.from(uri!.split(',')[1]!, 'base64').subarray(0, 8)).toEqual(PNG_SIGNATURE);
    expect(adapter.output()).toMatch(/prediction pred-1: succeeded in \d+\.\d\ds/);
    expect(adapter.output()).not.toContain('hunter2');
    expect(adapter.output()).not.toContain('on the moon');
  });

  it("answers a model's own failure with 200, status failed and the model's error", async () => {
    const res = await invoke(adapter, { id: 'pred-2', input: { prompt: 'x', fail_with: 'CUDA out of memory. Tried to allocate 2.00 GiB' } });
    expect(res.status).toBe(200);
    expect(await json(res)).toMatchObject({ id: 'pred-2', status: 'failed', output: null, error: 'CUDA out of memory. Tried to allocate 2.00 GiB' });
    expect(adapter.output()).toContain('prediction pred-2: failed');
  });

  it('answers 400 with a detail to a body that is not JSON or has no input object', async () => {
    const notJson = await invoke(adapter, '{"input": ');
    expect(notJson.status).toBe(400);
    expect((await json(notJson)).detail).toMatch(/^the request body is not JSON/);
    for (const body of [[], { input: 'a prompt' }, { prompt: 'x' }]) {
      const res = await invoke(adapter, body);
      expect(res.status).toBe(400);
      expect((await json(res)).detail).toBe('the request body must be a JSON object with "input", an object');
    }
    const badId = await invoke(adapter, { id: 7, input: { prompt: 'x' } });
    expect(badId.status).toBe(400);
  });

  it("passes Cog's 422 on through, naming the field", async () => {
    const res = await invoke(adapter, { input: { seed: 1 } });
    expect(res.status).toBe(422);
    expect((await json(res)).detail).toEqual([{ loc: ['body', 'input', 'prompt'], msg: 'field required', type: 'value_error.missing' }]);
  });

  it('runs invocations that arrive together one at a time (Cog would refuse the second with 409)', async () => {
    const input = (n: number) => ({ id: `burst-${n}`, input: { prompt: `p${n}`, steps: 3, step_seconds: 0.05 } });
    const answers = await Promise.all([0, 1, 2].map((n) => invoke(adapter, input(n))));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
    const bodies = await Promise.all(answers.map(json));
    expect(bodies.map((b) => [b.id, b.status])).toEqual([
      ['burst-0', 'succeeded'],
      ['burst-1', 'succeeded'],
      ['burst-2', 'succeeded'],
    ]);
  });

  it('answers 404 to other paths, and /ping stays 200 after predictions', async () => {
    expect((await fetch(`${adapter.url}/predictions`, { method: 'POST', body: '{}' })).status).toBe(404);
    expect((await fetch(`${adapter.url}/health-check`)).status).toBe(404);
    expect((await fetch(`${adapter.url}/ping`)).status).toBe(200);
  });
});

describe('the SageMaker adapter stopping', () => {
  it('stops the Cog server and exits 0 on SIGTERM', async () => {
    const adapter = await startAdapter();
    await pingUntil(adapter, ready);
    const pid = cogPid(adapter)!;
    expect(alive(pid)).toBe(true);
    adapter.child.kill('SIGTERM');
    expect(await adapter.exited).toBe(0);
    expect(alive(pid)).toBe(false);
    await adapter.closed;
    expect(adapter.output()).toContain('stopping (SIGTERM)');
  });

  it('answers 502 when the Cog server dies during a prediction, then exits non-zero', async () => {
    const adapter = await startAdapter();
    await pingUntil(adapter, ready);
    const res = await invoke(adapter, { id: 'pred-crash', input: { prompt: 'x', exit_with: 3 } });
    expect(res.status).toBe(502);
    expect((await json(res)).detail).toBe('the Cog server exited with status 3 during the prediction');
    expect(await adapter.exited).toBe(1);
    await adapter.closed;
    expect(adapter.output()).toContain('the Cog server exited with status 3');
  });
});
