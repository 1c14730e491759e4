/**
 * The demo trainer as deployed on AWS: started by an asynchronous Lambda invocation (through
 * the local Lambda endpoint), it reports by Cog-shaped webhooks, hands over output.zip by a
 * presigned S3 URL, keeps its state for status checks, runs once per id and honours cancel.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as aws from '#shared/aws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoTrainerFunction } from '#shared/deps';
import { resetRuntimeConfig } from '#shared/runtime-config';
import { inspectArchive } from '#shared/archive';
import { request } from '#shared/http';
import { DemoLambdaTrainer } from '#shared/trainers/demo/lambda-trainer';
import { TrainerFailedError } from '#shared/trainers/types';
import { handler } from '#lambdas/demo-trainer/handler';
import { startDemoTrainerServer } from '#lambdas/demo-trainer/server';
import { CogTrainer } from '#shared/trainers/cog/trainer';
import { instanceDataZip } from '#infra/local/demo';
import { startFixture, startServer, type Fixture, type TestServer } from '#test-helpers/aws-local';
import { waitFor } from '#test-helpers/local-mode';

let fx: Fixture;
let receiver: TestServer;
let zip: Buffer;
let trainer: DemoLambdaTrainer;

beforeAll(async () => {
  zip = await instanceDataZip(2);
  receiver = await startServer((req, res) => {
    if (req.method === 'GET') return void res.writeHead(200, { 'content-type': 'application/zip' }).end(zip);
    res.writeHead(200).end('{}');
  });
  fx = await startFixture({ as: 'start-trainer', config: { trainers: { demo: { backend: 'demo', steps_per_second: 200 } } }, lambdas: { 'demo-trainer': (p) => handler(p) } });
  process.env.DREAMBOOTH_CONFIG = JSON.stringify(fx.deps.config);
  resetRuntimeConfig();
  trainer = new DemoLambdaTrainer(demoTrainerFunction('demo-trainer', aws.lambda), fx.deps.store);
});
afterAll(async () => {
  await receiver?.close();
  await fx?.stop();
});

const input = (steps: number) => ({ instance_prompt: 'a cjw person', class_prompt: 'a person', instance_data: `${receiver.url}/person.zip`, max_train_steps: steps });
const hooks = (runId: string) => receiver.requests.filter((r) => r.method === 'POST').map((r) => JSON.parse(r.body)).filter((p) => p.id === runId);
const terminal = (runId: string) => hooks(runId).filter((p) => ['succeeded', 'failed', 'canceled'].includes(p.status));

describe('the demo trainer Lambda', () => {
  it('runs once per id and hands over an output.zip shaped like the real trainer\'s', async () => {
    const run = { trainingId: 'x', runId: 'db-demo-one', input: input(20), callbackUrl: `${receiver.url}/callback?secret=s` };
    expect(await trainer.start(run)).toEqual({ status: 'starting' });
    await trainer.start(run); // a retried start
    const [done] = await waitFor('terminal webhook', async () => (terminal(run.runId).length ? terminal(run.runId) : null), 30_000);
    expect(done.status).toBe('succeeded');
    expect(done.logs).toContain('Steps: 20/20');
    expect(hooks(run.runId)[0].status).toBe('processing');

    const res = await request(done.output, { allow: ['127.0.0.0/8'] });
    expect(res.status).toBe(200);
    const summary = await inspectArchive(
      { size: res.body.length, read: async (o, l) => res.body.subarray(o, o + l) },
      { maxBytes: 1e8, maxEntries: 100, maxUncompressedBytes: 1e8, maxRatio: 1000 },
    );
    expect(summary.rootFiles).toContain('model_index.json');
    expect(summary.topDirs).toEqual(expect.arrayContaining(['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler']));

    expect(await trainer.check(run)).toMatchObject({ status: 'succeeded', output: done.output });
    await new Promise((r) => setTimeout(r, 300));
    expect(terminal(run.runId)).toHaveLength(1);
  });

  it('honours cancel', async () => {
    const run = { trainingId: 'x', runId: 'db-demo-cancel', input: input(100_000), callbackUrl: `${receiver.url}/callback` };
    await trainer.start(run);
    await waitFor('the run to exist', async () => ((await trainer.check(run)) as { status: string }).status === 'processing', 10_000);
    await trainer.cancel(run.runId);
    const [done] = await waitFor('canceled webhook', async () => (terminal(run.runId).length ? terminal(run.runId) : null), 30_000);
    expect(done.status).toBe('canceled');
  });

  it('refuses input the real trainer would refuse, before starting anything', async () => {
    const run = { trainingId: 'x', runId: 'db-demo-bad', input: { instance_prompt: 'x' }, callbackUrl: `${receiver.url}/callback` };
    const err = await trainer.start(run).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(TrainerFailedError);
    expect(err!.message).toMatch(/class_prompt: field required/);
    expect(await trainer.check(run)).toEqual({ status: 'starting' });
  });
});

describe("local mode's demo trainer server across a restart", () => {
  it('listens on the same port and starts the run that died with it again, once, when asked about it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'demo-server-'));
    const stateFile = join(dir, 'demo-0.json');
    const opts = { stepsPerSecond: 200, uploadUrl: `${receiver.url}/uploads/`, allow: ['127.0.0.0/8'], stateFile };
    const first = await startDemoTrainerServer(opts);
    const run = { trainingId: 'x', runId: 'db-demo-restart', input: input(100_000), callbackUrl: `${receiver.url}/callback` };
    try {
      expect(await new CogTrainer({ url: first.url, allow: ['127.0.0.0/8'] }).start(run)).toMatchObject({ status: 'processing' });
    } finally {
      // As a kill leaves it: the run's process is gone, its record on disk.
      await first.stop();
    }
    const second = await startDemoTrainerServer(opts);
    try {
      expect(second.url).toBe(first.url);
      const cog = new CogTrainer({ url: second.url, allow: ['127.0.0.0/8'] });
      // Owed, it is not lost: the check (the start's own PUT) starts it again.
      expect(await cog.check({ ...run, input: input(20) })).toMatchObject({ status: 'processing' });
      const [done] = await waitFor('the restarted run to end', async () => (terminal(run.runId).length ? terminal(run.runId) : null), 30_000);
      expect(done.status).toBe('succeeded');
      expect(done.logs).toContain('Steps: 20/20');
      // Once: over now, the server is free, and a later question finds the run gone.
      expect(await cog.check(run)).toBe('lost');
    } finally {
      await second.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lets the debt go when another run is put to it (its slot moved on)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'demo-server-'));
    const opts = { stepsPerSecond: 200, uploadUrl: `${receiver.url}/uploads/`, allow: ['127.0.0.0/8'], stateFile: join(dir, 'demo-0.json') };
    const first = await startDemoTrainerServer(opts);
    await new CogTrainer({ url: first.url, allow: ['127.0.0.0/8'] }).start({ trainingId: 'x', runId: 'db-demo-gone', input: input(100_000), callbackUrl: `${receiver.url}/callback` });
    await first.stop();
    const second = await startDemoTrainerServer(opts);
    try {
      const cog = new CogTrainer({ url: second.url, allow: ['127.0.0.0/8'] });
      const next = { trainingId: 'y', runId: 'db-demo-next', input: input(20), callbackUrl: `${receiver.url}/callback` };
      expect(await cog.start(next)).toMatchObject({ status: 'processing' });
      const [done] = await waitFor('the next run to end', async () => (terminal(next.runId).length ? terminal(next.runId) : null), 30_000);
      expect(done.status).toBe('succeeded');
    } finally {
      await second.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
