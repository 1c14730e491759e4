/**
 * predict on weights versions, through the local fixture: two owners' versions of one template
 * share one endpoint (local SageMaker hosting serving the demo template, which fetches
 * `replicate_weights` by URL); each request carries a presigned URL of its own version's weights
 * only, short-lived, and never in the prediction record.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CreateEndpointCommand, CreateEndpointConfigCommand, CreateModelCommand, DescribeEndpointCommand, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '#infra/local/aws';
import { DEMO_TEMPLATE_LABEL, WEIGHTS_DIGEST_LABEL } from '#infra/local/sagemaker/instances';
import { type PredictDeps, predict, WEIGHTS_URL_SECONDS } from '#lambdas/predict/core';
import { handler as notified } from '#lambdas/prediction-notified/handler';
import { OciLayout } from '#shared/oci/layout';
import { invocationKey, type PredictionRecord, requestKey } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import type { VersionRecord } from '#shared/store';
import { type Fixture, startFixture } from '#test-helpers/aws-local';
import { pushLabelledImage } from '#test-helpers/serving-image';
import { newPrediction } from './records.ts';

let f: Fixture;
let d: PredictDeps;
let imagesDir: string;
let endpoint: string;
const TEMPLATE_DIGEST = 'd'.repeat(64);

beforeAll(async () => {
  f = await startFixture({ as: 'predict', lambdas: { 'prediction-notified': notified } });
  imagesDir = mkdtempSync(join(tmpdir(), 'predict-weights-'));
  await pushLabelledImage(new OciLayout(imagesDir), '', 'demo', { [DEMO_TEMPLATE_LABEL]: '1', [WEIGHTS_DIGEST_LABEL]: `sha256:${'c'.repeat(64)}` });
  const serving = f.serving!;
  endpoint = `${serving.endpointPrefix}t${TEMPLATE_DIGEST}`.slice(0, 63);
  const sm = new SageMakerClient({ region: f.local.env.AWS_REGION, endpoint: f.local.env.AWS_ENDPOINT_URL_SAGEMAKER, credentials: f.local.iam!.credentials('prediction-endpoint') });
  await sm.send(new CreateModelCommand({ ModelName: endpoint, ExecutionRoleArn: serving.endpointRoleArn, PrimaryContainer: { Image: `oci:${imagesDir}:demo` } }));
  await sm.send(
    new CreateEndpointConfigCommand({
      EndpointConfigName: endpoint,
      ProductionVariants: [{ VariantName: 'AllTraffic', ModelName: endpoint, InstanceType: 'ml.g5.xlarge', InitialInstanceCount: 1 }],
      AsyncInferenceConfig: { OutputConfig: { S3OutputPath: serving.outputPath, S3FailurePath: serving.outputPath, NotificationConfig: { SuccessTopic: serving.successTopicArn, ErrorTopic: serving.errorTopicArn } } },
    }),
  );
  await sm.send(new CreateEndpointCommand({ EndpointName: endpoint, EndpointConfigName: endpoint }));
  await pollUntil(async () => ((await sm.send(new DescribeEndpointCommand({ EndpointName: endpoint }))).EndpointStatus === 'InService' ? true : undefined), { what: 'the endpoint in service' });
  d = { ...f.deps, runtime: new SageMakerRuntimeClient({}) };
}, 120_000);
afterAll(async () => {
  await f?.stop();
  if (imagesDir) rmSync(imagesDir, { recursive: true, force: true });
});

/** A weights version of `model` on the shared template, its weights object in the bucket. */
async function weightsVersion(model: string, bytes: string): Promise<VersionRecord> {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const key = `weights/${sha256}`;
  await f.operator.s3.send(new PutObjectCommand({ Bucket: f.local.bucket, Key: key, Body: bytes }));
  const id = createHash('sha256').update(`${model}\n${TEMPLATE_DIGEST}\n${sha256}`).digest('hex');
  const v: VersionRecord = {
    id,
    model,
    image: `127.0.0.1:5000/templates/demo@sha256:${TEMPLATE_DIGEST}`,
    notes: null,
    training_id: `t-${id.slice(0, 8)}`,
    template: { name: 'demo-template', repository: '127.0.0.1:5000/templates/demo', digest: TEMPLATE_DIGEST, weights_input: 'replicate_weights' },
    created_at: new Date().toISOString(),
    weights: { key, size: bytes.length, sha256, input: 'replicate_weights' },
  };
  await f.operator.store.putVersion(v);
  return v;
}

async function submitted(v: VersionRecord): Promise<PredictionRecord> {
  const input = { prompt: 'a photo of cjw person', seed: 7 };
  const p = await newPrediction(f.operator, { owner: v.model.split('/')[0]!, model: v.model, version: v.id, input });
  await f.operator.s3.send(new PutObjectCommand({ Bucket: f.local.bucket, Key: requestKey(p.id), Body: JSON.stringify({ id: p.id, input }) }));
  return p;
}

const text = async (key: string) => (await (await f.operator.s3.send(new GetObjectCommand({ Bucket: f.local.bucket, Key: key }))).Body!).transformToString();

describe('predict on weights versions', () => {
  it("gives each owner's prediction a short-lived URL of its own version's weights only, on one shared endpoint", async () => {
    const mine = await weightsVersion('acme/cjw', 'weights of acme');
    const theirs = await weightsVersion('other/dog', 'weights of other');
    const runs = [];
    for (const v of [mine, theirs]) {
      const p = await submitted(v);
      const { executionArn, token } = await f.waitingTask();
      expect(await predict(d, { prediction_id: p.id, task_token: token, endpoint })).toMatchObject({ status: 'sent' });
      runs.push({ v, p, executionArn });
    }
    for (const [i, { v, p, executionArn }] of runs.entries()) {
      const other = runs[1 - i]!.v;
      const sent = JSON.parse(await text(invocationKey(p.id))) as { id: string; input: Record<string, string> };
      expect(sent.id).toBe(p.id);
      const url = new URL(sent.input.replicate_weights!);
      expect(url.pathname.endsWith(`/${v.weights!.key}`)).toBe(true);
      expect(JSON.stringify(sent)).not.toContain(other.weights!.sha256);
      // Minutes, not the default week of a presigned GET.
      const expires = Number(url.searchParams.get('X-Amz-Expires'));
      expect(expires).toBeGreaterThan(0);
      expect(expires).toBeLessThanOrEqual(WEIGHTS_URL_SECONDS);
      expect(WEIGHTS_URL_SECONDS).toBeLessThanOrEqual(600);
      // Never in the record, nor in the api's request object.
      const stored = (await new PredictionStore(f.operator.store).get(p.id))!;
      expect(JSON.stringify(stored)).not.toContain('replicate_weights');
      expect(await text(requestKey(p.id))).not.toContain('replicate_weights');
      // The model fetched the weights through the URL: it renders with their digest.
      expect((await f.finished(executionArn)).status).toBe('SUCCEEDED');
      const answer = JSON.parse(await text(`predictions/${p.id}.out`)) as { status: string; logs: string };
      expect(answer.status).toBe('succeeded');
      expect(answer.logs).toContain(`Weights sha256:${v.weights!.sha256}`);
    }
  }, 60_000);

  it('leaves an image version\'s request as the api wrote it', async () => {
    const p = await newPrediction(f.operator, { version: 'e'.repeat(64) });
    await f.operator.s3.send(new PutObjectCommand({ Bucket: f.local.bucket, Key: requestKey(p.id), Body: JSON.stringify({ id: p.id, input: p.input }) }));
    const { executionArn, token } = await f.waitingTask();
    await predict(d, { prediction_id: p.id, task_token: token, endpoint });
    expect((await f.finished(executionArn)).status).toBe('SUCCEEDED');
    await expect(text(invocationKey(p.id))).rejects.toThrow();
  }, 60_000);
});
