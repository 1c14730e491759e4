/**
 * `GET /v1/trainings/{id}/weights` (lambdas/upload) as API Gateway calls it, running as the
 * upload function under its own policy from the synthesized template (a stack with a sagemaker
 * trainer): s3rver holds the staged archives, dynalite the trainings.
 */
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobKeys } from '#shared/trainers/sagemaker/training-jobs';
import type { TrainingRecord } from '#shared/training';
import { handler } from '#lambdas/upload/handler';
import { newTraining, startFixture, type Fixture } from '#test-helpers/aws-local';

const IMAGE = `127.0.0.1:5000/trainers/dreambooth@sha256:${'b'.repeat(64)}`;
const GPU = { backend: 'sagemaker', image: IMAGE, max_runtime_seconds: 3600 };
const ARCHIVE = Buffer.from('PK\x05\x06'.padEnd(22, '\0'));

let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture({ as: 'upload', config: { trainers: { gpu: GPU } } });
});
afterAll(async () => fx?.stop());

/** A succeeded training whose archive stage-weights left at `key` (written as local mode itself). */
async function succeeded(key: (t: TrainingRecord) => string, over: Partial<TrainingRecord> = {}): Promise<{ t: TrainingRecord; key: string }> {
  const t = await newTraining(fx.operator, { status: 'succeeded', ...over });
  const k = key(t);
  await fx.operator.s3.send(new PutObjectCommand({ Bucket: fx.deps.bucket, Key: k, Body: ARCHIVE }));
  await fx.operator.store.updateTraining(t.id, { staged: { bucket: fx.deps.bucket, key: k, size: ARCHIVE.length } });
  return { t, key: k };
}
const sagemakerKey = (t: TrainingRecord) => `${jobKeys(t.id).output}db-0123abcd-${t.id}/output/model/output.zip`;
const stagedKey = (t: TrainingRecord) => `staged/${t.id}/output.zip`;

function weights(id: string) {
  return handler({
    httpMethod: 'GET',
    resource: '/v1/trainings/{id}/weights',
    path: `/v1/trainings/${id}/weights`,
    pathParameters: { id },
    requestContext: { authorizer: { owners: JSON.stringify(['alice']) } },
  } as never);
}

describe("a succeeded training's weights", () => {
  it.each([
    ['staged under staged/', stagedKey, {}],
    ["a SageMaker-trained training's, where its job left them", sagemakerKey, { trainer: 'gpu', trainer_backend: 'sagemaker' as const }],
  ])('%s: a redirect to a presigned GET that downloads them', async (_what, key, over) => {
    const { t } = await succeeded(key, over);
    const res = await weights(t.id);
    expect(res.statusCode).toBe(302);
    const download = await fetch(res.headers!.location as string);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).equals(ARCHIVE)).toBe(true);
  });

  it.each([
    ['staged under staged/', stagedKey, {}],
    ["a SageMaker-trained training's", sagemakerKey, { trainer: 'gpu', trainer_backend: 'sagemaker' as const }],
  ])('%s, expired from the bucket: 410 with a detail that says so', async (_what, key, over) => {
    const staged = await succeeded(key, over);
    await fx.operator.s3.send(new DeleteObjectCommand({ Bucket: fx.deps.bucket, Key: staged.key }));
    const res = await weights(staged.t.id);
    expect(res.statusCode).toBe(410);
    expect(JSON.parse(res.body)).toMatchObject({ status: 410, detail: expect.stringMatching(/have expired \(staged archives are kept retention\.staged_archive_days\)/) });
  });
});
