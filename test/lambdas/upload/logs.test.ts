/**
 * `GET /v1/trainings/{id}/logs` (lambdas/upload) as API Gateway calls it, running as the upload
 * function under its own policy from the synthesized template: the whole log, from the record
 * when it holds all of it, else from the bucket the callback wrote it to.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logKey, recordedLog } from '#shared/run-logs';
import type { TrainingRecord } from '#shared/training';
import { handler } from '#lambdas/upload/handler';
import { newTraining, startFixture, type Fixture } from '#test-helpers/aws-local';

let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture({ as: 'upload' });
});
afterAll(async () => fx?.stop());

const LONG = Array.from({ length: 5000 }, (_, i) => `step ${i + 1}/5000 ▕${'█'.repeat(30)}▏ loss 0.12\n`).join('');

/** A training whose trainer sent `log`, recorded as the callback records it (written as local mode itself). */
async function withLog(log: string, inBucket = true, over: Partial<TrainingRecord> = {}): Promise<TrainingRecord> {
  const recorded = recordedLog(log);
  const t = await newTraining(fx.operator, { status: 'processing', logs: recorded.tail, logs_length: recorded.length, ...over });
  if (!recorded.whole && inBucket) await fx.operator.s3.send(new PutObjectCommand({ Bucket: fx.deps.bucket, Key: logKey(t.id), Body: log }));
  return t;
}

function logs(id: string, owners = ['alice']) {
  return handler({
    httpMethod: 'GET',
    resource: '/v1/trainings/{id}/logs',
    path: `/v1/trainings/${id}/logs`,
    pathParameters: { id },
    requestContext: { authorizer: { owners: JSON.stringify(owners) } },
  } as never);
}

describe("a training's whole log", () => {
  it('a log the record holds whole: the text itself', async () => {
    const t = await withLog('step 1/10\nstep 2/10\n');
    const res = await logs(t.id);
    expect(res).toMatchObject({ statusCode: 200, body: 'step 1/10\nstep 2/10\n' });
    expect(res.headers!['content-type']).toBe('text/plain; charset=utf-8');
  });

  it('a log longer than the record keeps: a redirect to a presigned GET of the whole text', async () => {
    const t = await withLog(LONG);
    expect((await fx.operator.store.getTraining(t.id))!.logs!.length).toBeLessThan(LONG.length);
    const res = await logs(t.id);
    expect(res.statusCode).toBe(302);
    const download = await fetch(res.headers!.location as string);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(await download.text()).toBe(LONG);
  });

  it('no log yet: empty text', async () => {
    const t = await newTraining(fx.operator);
    expect(await logs(t.id)).toMatchObject({ statusCode: 200, body: '' });
  });

  it("another owner's training, or no such training: 404", async () => {
    const t = await withLog('hello\n');
    expect((await logs(t.id, ['bob'])).statusCode).toBe(404);
    expect((await logs('nosuchtraining0000000000')).statusCode).toBe(404);
  });

  it('a long log expired from the bucket: 410 with a detail that says so', async () => {
    const t = await withLog(LONG, false);
    const res = await logs(t.id);
    expect(res.statusCode).toBe(410);
    expect(JSON.parse(res.body).detail).toMatch(/has expired .*retention\.staged_archive_days/);
  });
});
