/**
 * predict, through the local fixture: the prediction's record in local DynamoDB, the request in
 * local S3, a real task token of a waiting execution, and a real asynchronous endpoint of local
 * SageMaker hosting (the demo template) whose notification reaches prediction-notified, which
 * ends the wait. Only SageMaker's throttling, which local hosting never answers, is a mock.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { CreateEndpointCommand, CreateEndpointConfigCommand, CreateModelCommand, DescribeEndpointCommand, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { InvokeEndpointAsyncCommand, SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '#infra/local/aws';
import { DEMO_TEMPLATE_LABEL, WEIGHTS_DIGEST_LABEL } from '#infra/local/sagemaker/instances';
import { type PredictDeps, predict } from '#lambdas/predict/core';
import { handler as notified } from '#lambdas/prediction-notified/handler';
import { OciLayout } from '#shared/oci/layout';
import type { PredictionRecord } from '#shared/predictions/record';
import { requestKey } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { PredictionErrors } from '#shared/serving/steps';
import { StepErrors } from '#shared/steps';
import { type Fixture, startFixture } from '#test-helpers/aws-local';
import { pushLabelledImage } from '#test-helpers/serving-image';
import { newPrediction } from './records.ts';

let f: Fixture;
let d: PredictDeps;
let imagesDir: string;
let endpoint: string;
const starts: PredictionRecord[] = [];

beforeAll(async () => {
  f = await startFixture({ as: 'predict', lambdas: { 'prediction-notified': notified } });
  imagesDir = mkdtempSync(join(tmpdir(), 'predict-images-'));
  await pushLabelledImage(new OciLayout(imagesDir), '', 'demo', { [DEMO_TEMPLATE_LABEL]: '1', [WEIGHTS_DIGEST_LABEL]: `sha256:${'c'.repeat(64)}` });
  const serving = f.serving!;
  endpoint = `${serving.endpointPrefix}demo`;
  // Made as prediction-endpoint makes it; its own tests cover how.
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
  d = { ...f.deps, runtime: new SageMakerRuntimeClient({}), startWebhook: async (p) => void starts.push(p) };
}, 120_000);
afterAll(async () => {
  await f?.stop();
  if (imagesDir) rmSync(imagesDir, { recursive: true, force: true });
});

/** A prediction whose request the api wrote. */
async function submitted(over: Partial<PredictionRecord> = {}): Promise<PredictionRecord> {
  const p = await newPrediction(f.operator, over);
  await f.operator.s3.send(new PutObjectCommand({ Bucket: f.local.bucket, Key: requestKey(p.id), Body: JSON.stringify({ id: p.id, input: p.input }) }));
  return p;
}

const record = async (id: string) => (await new PredictionStore(f.operator.store).get(id))!;

describe('predict', () => {
  it('stores the task token and marks the prediction processing before it sends; the answer ends the wait', async () => {
    const p = await submitted();
    const { executionArn, token } = await f.waitingTask();
    // What the table holds when the request leaves: the notification may come back before the call returns.
    const runtime = new SageMakerRuntimeClient({});
    const seenAtSend: PredictionRecord[] = [];
    runtime.middlewareStack.add((next) => async (args) => {
      seenAtSend.push(await record(p.id));
      return next(args);
    }, { step: 'initialize' });
    const out = await predict({ ...d, runtime }, { prediction_id: p.id, task_token: token, endpoint });
    expect(out).toEqual({ inference_id: p.id, status: 'sent' });
    expect(seenAtSend).toHaveLength(1);
    expect(seenAtSend[0]).toMatchObject({ status: 'processing', task_token: token, endpoint });
    expect(seenAtSend[0]!.started_at).toBeTruthy();
    // The demo template answers, SageMaker notifies, prediction-notified sends the task success.
    const done = await f.finished(executionArn);
    expect(done.status).toBe('SUCCEEDED');
    expect(JSON.parse(done.output!)).toEqual({ output_location: `${f.serving!.outputPath}${p.id}.out` });
  });

  it('sends the start webhook when the filter asks for it, and only then', async () => {
    const wanted = await submitted({ webhook: 'https://example.com/hook', webhook_events_filter: ['start', 'completed'] });
    const unwanted = await submitted({ webhook: 'https://example.com/hook', webhook_events_filter: ['completed'] });
    for (const p of [wanted, unwanted]) {
      const { token } = await f.waitingTask();
      const out = await predict(d, { prediction_id: p.id, task_token: token, endpoint });
      expect(out.start_webhook).toBe(p === wanted ? 'sent' : undefined);
    }
    expect(starts.map((s) => s.id)).toEqual([wanted.id]);
    expect(starts[0]!.status).toBe('processing');
  });

  it('sends nothing for a prediction canceled meanwhile', async () => {
    const p = await submitted({ status: 'canceled', completed_at: new Date().toISOString() });
    const { token } = await f.waitingTask();
    expect(await predict(d, { prediction_id: p.id, task_token: token, endpoint })).toEqual({ inference_id: p.id, status: 'not sent' });
    expect((await record(p.id)).task_token).toBeUndefined();
  });

  it('fails the step, naming the endpoint, when SageMaker refuses the request (an endpoint deleted meanwhile)', async () => {
    const p = await submitted();
    const { token } = await f.waitingTask();
    const gone = `${f.serving!.endpointPrefix}gone`;
    const e = await predict(d, { prediction_id: p.id, task_token: token, endpoint: gone }).catch((x: Error) => x);
    expect(e).toMatchObject({ name: PredictionErrors.InferenceFailed });
    expect((e as Error).message).toMatch(new RegExp(`SageMaker refused the request on ${gone}: .*not found`));
    // Processing until "Record the failure" ends it; no start webhook for a request never queued.
    expect((await record(p.id)).status).toBe('processing');
  });

  it('retries a throttled request with the next token, which replaces the first', async () => {
    const runtime = new SageMakerRuntimeClient({});
    const mock = mockClient(runtime);
    mock.on(InvokeEndpointAsyncCommand).rejectsOnce(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' })).resolves({ InferenceId: 'x' });
    const p = await submitted();
    const first = await predict({ ...d, runtime }, { prediction_id: p.id, task_token: 'token-1', endpoint }).catch((x: Error) => x);
    expect(first).toMatchObject({ name: StepErrors.Transient, message: 'SageMaker: Rate exceeded' });
    await predict({ ...d, runtime }, { prediction_id: p.id, task_token: 'token-2', endpoint });
    expect((await record(p.id)).task_token).toBe('token-2');
    mock.restore();
  });
});
