/**
 * The demo template's HTTP contracts on loopback: Cog's (health check, OpenAPI schema,
 * synchronous predictions, 422 naming the field, 409 while busy) and SageMaker's (/ping,
 * /invocations answered as serving/sagemaker_adapter.py answers them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoTemplateServer } from '#serving/demo-template/server';
import { STEP_MS } from '#serving/demo-template/schema';
import { decodePng, pngOfDataUri } from '#test-helpers/png';

type Server = Awaited<ReturnType<typeof startDemoTemplateServer>>;
const VERSION_WEIGHTS = 'sha256:' + '1f'.repeat(32);

async function call(server: Server, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

describe('the demo template, as a Cog server', () => {
  let server: Server;
  beforeAll(async () => {
    server = await startDemoTemplateServer({ weights: { digest: VERSION_WEIGHTS } });
  });
  afterAll(() => server.stop());

  it('is READY and describes its inputs as Cog does', async () => {
    expect(await call(server, 'GET', '/health-check')).toEqual({ status: 200, body: { status: 'READY', setup: { status: 'succeeded' } } });
    const { status, body } = await call(server, 'GET', '/openapi.json');
    expect(status).toBe(200);
    const input = body.components.schemas.Input;
    expect(input.required).toEqual(['prompt']);
    expect(Object.keys(input.properties)).toEqual(['prompt', 'seed', 'num_outputs', 'width', 'height', 'num_inference_steps']);
    expect(input.properties.num_outputs).toMatchObject({ type: 'integer', minimum: 1, maximum: 4, default: 1 });
    expect(body.components.schemas.Output).toEqual({ title: 'Output', type: 'array', items: { type: 'string', format: 'uri' } });
  });

  it('answers a prediction synchronously with its pictures as PNG data URIs', async () => {
    const { status, body } = await call(server, 'POST', '/predictions', { id: 'p1', input: { prompt: 'a photo of cjw person', num_outputs: 2, width: 64, height: 48 } });
    expect(status).toBe(200);
    expect(body).toMatchObject({ id: 'p1', status: 'succeeded', error: null, input: { prompt: 'a photo of cjw person', num_outputs: 2, width: 64, height: 48 } });
    expect(body.metrics.predict_time).toBeTypeOf('number');
    expect(body.logs).toContain(`Weights ${VERSION_WEIGHTS}`);
    expect(body.output).toHaveLength(2);
    const [a, b] = (body.output as string[]).map((uri) => decodePng(pngOfDataUri(uri)));
    expect([a!.width, a!.height]).toEqual([64, 48]);
    expect(a!.rgb.equals(b!.rgb)).toBe(false);
  });

  it("spends the model's own time on its steps, and says so in its logs", async () => {
    const { body } = await call(server, 'POST', '/predictions', { input: { prompt: 'x', num_inference_steps: 20 } });
    expect(body.logs).toContain('Steps: 20/20');
    // 20 steps of STEP_MS each: the model's time is at least that (a lower bound holds on any
    // machine), less the millisecond by which Date and the timer clock may round apart.
    expect(body.metrics.predict_time).toBeGreaterThanOrEqual((20 * STEP_MS - 1) / 1000);
  });

  it('gives the same picture for the same prompt, another for another prompt', async () => {
    const picture = async (prompt: string) => (await call(server, 'POST', '/predictions', { input: { prompt } })).body.output[0] as string;
    const first = await picture('a photo of cjw person on the moon');
    expect(decodePng(pngOfDataUri(first))).toMatchObject({ width: 128, height: 128 });
    expect(await picture('a photo of cjw person on the moon')).toBe(first);
    expect(await picture('a photo of cjw person on mars')).not.toBe(first);
  });

  it('answers 422 naming the field, as Cog does', async () => {
    const detail = async (input: unknown) => {
      const res = await call(server, 'POST', '/predictions', { input });
      expect(res.status).toBe(422);
      return res.body.detail as { loc: string[]; msg: string; type: string }[];
    };
    expect(await detail({ seed: 3 })).toEqual([{ loc: ['body', 'input', 'prompt'], msg: 'field required', type: 'value_error.missing' }]);
    expect((await detail({ prompt: 'x', num_outputs: 5 }))[0]!.loc).toEqual(['body', 'input', 'num_outputs']);
    expect((await detail({ prompt: 'x', width: 4096 }))[0]!.loc).toEqual(['body', 'input', 'width']);
    expect((await detail({ prompt: 'x', seed: 'lucky' }))[0]!.loc).toEqual(['body', 'input', 'seed']);
    expect((await detail({ prompt: 'x', num_inference_steps: 0 }))[0]!.loc).toEqual(['body', 'input', 'num_inference_steps']);
    expect((await detail({ prompt: 'x', replicate_weights: 'https://example.test/lora.tar' }))[0]).toEqual({
      loc: ['body', 'input', 'replicate_weights'],
      msg: 'this server takes no per-request weights',
      type: 'value_error',
    });
    const notJson = await call(server, 'POST', '/predictions', '{"input":');
    expect(notJson.status).toBe(422);
    expect(notJson.body.detail[0].loc).toEqual(['body']);
  });

  it('answers 404 elsewhere', async () => {
    expect((await call(server, 'GET', '/predictions')).status).toBe(404);
    expect((await call(server, 'POST', '/trainings', {})).status).toBe(404);
  });
});

describe('the demo template, as a SageMaker endpoint', () => {
  let server: Server;
  beforeAll(async () => {
    server = await startDemoTemplateServer({ weights: { digest: VERSION_WEIGHTS } });
  });
  afterAll(() => server.stop());

  it('answers /ping 200', async () => {
    expect(await call(server, 'GET', '/ping')).toEqual({ status: 200, body: { status: 'ready' } });
  });

  it('answers an invocation with the prediction a Cog server gives for the same input', async () => {
    const input = { prompt: 'a photo of cjw person on the moon', seed: 42 };
    const invoked = await call(server, 'POST', '/invocations', { id: 'pred-9', input });
    const predicted = await call(server, 'POST', '/predictions', { input });
    expect(invoked.status).toBe(200);
    expect(invoked.body).toMatchObject({ id: 'pred-9', status: 'succeeded', error: null });
    expect(invoked.body.logs).toContain('Using seed: 42');
    expect(invoked.body.output).toEqual(predicted.body.output);
  });

  it('answers 400 to a body that is not {"input": {...}} and 422 to an input the schema refuses', async () => {
    const notJson = await call(server, 'POST', '/invocations', 'prompt=x');
    expect(notJson.status).toBe(400);
    expect(notJson.body.detail).toMatch(/^the request body is not JSON/);
    for (const body of [{ prompt: 'x' }, { input: ['x'] }, null]) {
      const res = await call(server, 'POST', '/invocations', body);
      expect(res.status).toBe(400);
      expect(res.body.detail).toBe('the request body must be a JSON object with "input", an object');
    }
    expect((await call(server, 'POST', '/invocations', { id: 3, input: { prompt: 'x' } })).status).toBe(400);
    const refused = await call(server, 'POST', '/invocations', { input: { num_outputs: 2 } });
    expect(refused.status).toBe(422);
    expect(refused.body.detail[0].loc).toEqual(['body', 'input', 'prompt']);
  });
});

describe('the demo template with per-request weights', () => {
  let server: Server;
  let release: () => void = () => undefined;
  let gate: Promise<void> = Promise.resolve();
  const asked: string[] = [];
  beforeAll(async () => {
    server = await startDemoTemplateServer({
      weights: { digest: VERSION_WEIGHTS },
      weightsFor: async (url) => {
        asked.push(url);
        await gate;
        if (url.endsWith('/missing.tar')) throw new Error('could not download the weights: HTTP 404');
        return `sha256:of ${url}`;
      },
    });
  });
  afterAll(() => server.stop());

  it('offers replicate_weights and renders with them instead of the version weights', async () => {
    const { body } = await call(server, 'GET', '/openapi.json');
    expect(body.components.schemas.Input.properties.replicate_weights).toMatchObject({ type: 'string', format: 'uri' });
    const input = { prompt: 'a photo of cjw person', seed: 1 };
    const own = await call(server, 'POST', '/predictions', { input });
    const other = await call(server, 'POST', '/predictions', { input: { ...input, replicate_weights: 'https://example.test/lora.tar' } });
    expect(asked).toEqual(['https://example.test/lora.tar']);
    expect(other.body).toMatchObject({ status: 'succeeded' });
    expect(other.body.logs).toContain('Weights sha256:of https://example.test/lora.tar');
    expect(other.body.output).not.toEqual(own.body.output);
  });

  it("answers a failure to get them as the model's own: 200, status failed, the error", async () => {
    const res = await call(server, 'POST', '/invocations', { input: { prompt: 'x', replicate_weights: 'https://example.test/missing.tar' } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'failed', output: null, error: 'could not download the weights: HTTP 404' });
  });

  it('is BUSY during a prediction: Cog refuses another with 409, SageMaker invocations wait their turn', async () => {
    gate = new Promise((r) => (release = r));
    const before = asked.length;
    const first = call(server, 'POST', '/predictions', { input: { prompt: 'slow', replicate_weights: 'https://example.test/slow.tar' } });
    // The first prediction is waiting for its weights once the hook has been asked.
    while (asked.length === before) await new Promise((r) => setTimeout(r, 5));
    expect((await call(server, 'GET', '/health-check')).body.status).toBe('BUSY');
    expect(await call(server, 'POST', '/predictions', { input: { prompt: 'another' } })).toEqual({ status: 409, body: { detail: 'Already running a prediction' } });
    const queued = call(server, 'POST', '/invocations', { id: 'queued', input: { prompt: 'queued' } });
    release();
    const [done, next] = [(await first).body, (await queued).body];
    expect(done.status).toBe('succeeded');
    expect(next).toMatchObject({ id: 'queued', status: 'succeeded' });
    expect(Date.parse(next.started_at)).toBeGreaterThanOrEqual(Date.parse(done.completed_at));
    expect((await call(server, 'GET', '/health-check')).body.status).toBe('READY');
  });
});
