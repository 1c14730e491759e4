/**
 * record-prediction through the local fixture: the endpoint's response in local S3 (as the
 * adapter answers it: Cog's prediction, files as data URIs), the prediction in local DynamoDB,
 * read and written with the function's own IAM.
 */
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RecordPredictionDeps, recordFailure, storeOutputs } from '#lambdas/record-prediction/core';
import type { PredictionRecord } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { LOG_TAIL_BYTES } from '#shared/run-logs';
import { PredictionErrors } from '#shared/serving/steps';
import { type Fixture, startFixture } from '#test-helpers/aws-local';
import { newPrediction } from '../predict/records.ts';

let f: Fixture;
let d: RecordPredictionDeps;

beforeAll(async () => {
  f = await startFixture({ as: 'record-prediction' });
  d = f.deps;
}, 120_000);
afterAll(() => f?.stop());

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
const png = `data:image/png;base64,${PNG.toString('base64')}`;
const jpeg = `data:image/jpeg;base64,${Buffer.from('jpeg bytes').toString('base64')}`;
const text = 'data:text/plain,hello%20world';

const processing = () => newPrediction(f.operator, { status: 'processing', started_at: new Date().toISOString(), logs: 'waiting: creating the endpoint', task_token: 'a-token' });

/** Writes the endpoint's response where SageMaker writes it; answers its location. */
async function responded(id: string, body: unknown): Promise<string> {
  const key = `predictions/${id}.out`;
  await f.operator.s3.send(new PutObjectCommand({ Bucket: f.local.bucket, Key: key, Body: JSON.stringify(body) }));
  return `s3://${f.local.bucket}/${key}`;
}

const record = async (id: string) => (await new PredictionStore(f.operator.store).get(id))!;

async function object(key: string) {
  const out = await f.operator.s3.send(new GetObjectCommand({ Bucket: f.local.bucket, Key: key }));
  return { type: out.ContentType, body: Buffer.from(await out.Body!.transformToByteArray()) };
}

describe('store the outputs', () => {
  it('stores each data URI (alone, in a list, in an object) as an S3 object with its extension, and keeps predict_time and logs', async () => {
    const cases: { output: unknown; expected: unknown; files: [string, string, Buffer][] }[] = [
      { output: png, expected: { $file: 'F/0.png' }, files: [['0.png', 'image/png', PNG]] },
      {
        output: [png, jpeg],
        expected: [{ $file: 'F/0.png' }, { $file: 'F/1.jpg' }],
        files: [['0.png', 'image/png', PNG], ['1.jpg', 'image/jpeg', Buffer.from('jpeg bytes')]],
      },
      {
        output: { image: png, notes: text, caption: 'a moon', seeds: [1, 2], nested: { mask: jpeg } },
        expected: { image: { $file: 'F/0.png' }, notes: { $file: 'F/1.txt' }, caption: 'a moon', seeds: [1, 2], nested: { mask: { $file: 'F/2.jpg' } } },
        files: [['0.png', 'image/png', PNG], ['1.txt', 'text/plain', Buffer.from('hello world')], ['2.jpg', 'image/jpeg', Buffer.from('jpeg bytes')]],
      },
    ];
    for (const c of cases) {
      const p = await processing();
      const location = await responded(p.id, { id: p.id, status: 'succeeded', output: c.output, logs: 'step 1/20\nstep 20/20', error: null, metrics: { predict_time: 4.25 } });
      expect(await storeOutputs(d, p.id, location)).toEqual({ status: 'succeeded' });
      const after = await record(p.id);
      const prefix = `predictions/${p.id}/files`;
      expect(after.output).toEqual(JSON.parse(JSON.stringify(c.expected).replaceAll('F/', `${prefix}/`)));
      expect(after).toMatchObject({ status: 'succeeded', predict_time: 4.25, logs: 'waiting: creating the endpoint\nstep 1/20\nstep 20/20', error: null, task_token: null });
      expect(after.completed_at).toBeTruthy();
      for (const [name, type, body] of c.files) expect(await object(`${prefix}/${name}`)).toEqual({ type, body });
      // Never inline in the record.
      expect(JSON.stringify(after)).not.toContain('base64');
    }
  });

  it("fails the prediction with the model's own error, its logs and predict_time", async () => {
    const p = await processing();
    const location = await responded(p.id, { id: p.id, status: 'failed', output: null, logs: 'Traceback …\nValueError: prompt too long', error: 'ValueError: prompt too long', metrics: { predict_time: 0.5 } });
    expect(await storeOutputs(d, p.id, location)).toEqual({ status: 'failed' });
    expect(await record(p.id)).toMatchObject({ status: 'failed', error: 'ValueError: prompt too long', predict_time: 0.5, output: null, logs: 'waiting: creating the endpoint\nTraceback …\nValueError: prompt too long' });
  });

  it("keeps the end of a long log, within the record's bound", async () => {
    const p = await processing();
    const lines = Array.from({ length: 20_000 }, (_, i) => `step ${i}`);
    const location = await responded(p.id, { status: 'succeeded', output: 'done', logs: lines.join('\n'), metrics: {} });
    await storeOutputs(d, p.id, location);
    const after = await record(p.id);
    expect(Buffer.byteLength(after.logs)).toBeLessThanOrEqual(LOG_TAIL_BYTES);
    expect(after.logs.endsWith('step 19999')).toBe(true);
    expect(after.logs.split('\n')[0]).toMatch(/^step \d+$/);
    expect(after).toMatchObject({ output: 'done', predict_time: null });
  });

  it('leaves a canceled prediction canceled and writes no file', async () => {
    const p = await newPrediction(f.operator, { status: 'canceled', completed_at: new Date().toISOString() });
    const location = await responded(p.id, { status: 'succeeded', output: [png] });
    expect(await storeOutputs(d, p.id, location)).toEqual({ status: 'canceled' });
    expect((await record(p.id)).output).toBeNull();
    await expect(f.operator.s3.send(new HeadObjectCommand({ Bucket: f.local.bucket, Key: `predictions/${p.id}/files/0.png` }))).rejects.toMatchObject({ name: 'NotFound' });
  });

  it('reads no response outside the predictions prefix', async () => {
    const p = await processing();
    await expect(storeOutputs(d, p.id, `s3://${f.local.bucket}/logs/${p.id}.out`)).rejects.toMatchObject({ name: PredictionErrors.InferenceFailed });
  });
});

describe('record the failure', () => {
  const failed = async (p: PredictionRecord, error: { Error?: string; Cause?: string }) => {
    expect(await recordFailure(d, p.id, error)).toEqual({ status: 'failed' });
    const after = await record(p.id);
    expect(after).toMatchObject({ status: 'failed', task_token: null });
    return after.error!;
  };

  it('names the time limit when SageMaker says the request timed out, with what the server wrote', async () => {
    const p = await processing();
    const failureLocation = await responded(`${p.id}-error`, { detail: 'the model is still running' });
    const error = await failed(p, { Error: PredictionErrors.InferenceFailed, Cause: JSON.stringify({ reason: 'Inference request timed out after 3600 seconds', failure_location: failureLocation }) });
    expect(error).toMatch(`the prediction took longer than its time limit of ${d.config.serving.invocation_timeout_seconds} s (serving.invocation_timeout_seconds): Inference request timed out`);
    expect(error).toContain('the model is still running');
  });

  it("says a request expired in the queue, and gives a step's own message as it is", async () => {
    const expired = await failed(await processing(), { Error: PredictionErrors.InferenceFailed, Cause: JSON.stringify({ reason: 'Request expired: RequestTTL exceeded' }) });
    expect(expired).toMatch(/waited in the endpoint's queue past its time to live/);
    const own = await failed(await processing(), { Error: PredictionErrors.QuotaExceeded, Cause: JSON.stringify({ errorType: 'QuotaExceeded', errorMessage: 'SageMaker refused the endpoint: the quota …' }) });
    expect(own).toBe('SageMaker refused the endpoint: the quota …');
    const timeout = await failed(await processing(), { Error: 'States.Timeout' });
    expect(timeout).toMatch(/did not finish in time/);
  });

  it('leaves a canceled prediction canceled', async () => {
    const p = await newPrediction(f.operator, { status: 'canceled', completed_at: new Date().toISOString() });
    expect(await recordFailure(d, p.id, { Error: 'States.Timeout' })).toEqual({ status: 'canceled' });
    expect((await record(p.id)).error).toBeNull();
  });
});
