/**
 * prediction-endpoint's ensure: DynamoDB through the local fixture (the prediction, its version,
 * the endpoint's record), SageMaker and Application Auto Scaling as mocks, since only AWS
 * produces their refusals (quotas, capacity, a missing image).
 */
import { ApplicationAutoScalingClient, DeregisterScalableTargetCommand, PutScalingPolicyCommand, RegisterScalableTargetCommand } from '@aws-sdk/client-application-auto-scaling';
import { CloudWatchClient, DeleteAlarmsCommand, PutMetricAlarmCommand } from '@aws-sdk/client-cloudwatch';
import {
  CreateEndpointCommand,
  CreateEndpointConfigCommand,
  CreateModelCommand,
  DeleteEndpointCommand,
  DeleteEndpointConfigCommand,
  DeleteModelCommand,
  DescribeEndpointCommand,
  ListEndpointsCommand,
  ResourceLimitExceeded,
  SageMakerClient,
  UpdateEndpointWeightsAndCapacitiesCommand,
} from '@aws-sdk/client-sagemaker';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { logger } from '#shared/log';
import type { PredictionRecord } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { EndpointRecords } from '#shared/serving/endpoint-record';
import { type EndpointDeps, ensureEndpoint } from '#lambdas/prediction-endpoint/core';
import { sweepEndpoints } from '#lambdas/prediction-endpoint/sweep';
import { type Fixture, startFixture } from '#test-helpers/aws-local';

const VERSION = 'b'.repeat(64);
const IMAGE = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/dreambooth/acme/cjw@sha256:' + 'c'.repeat(64);
const PREFIX = 'db-0123abcd-p-';
const ENDPOINT = `${PREFIX}${VERSION}`.slice(0, 63);

const sm = mockClient(SageMakerClient);
const aas = mockClient(ApplicationAutoScalingClient);
const cw = mockClient(CloudWatchClient);
const log = logger('test');

let f: Fixture;
let d: EndpointDeps;
let seq = 0;

beforeAll(async () => {
  f = await startFixture({ as: 'prediction-endpoint' });
  d = {
    ...f.deps,
    sagemaker: new SageMakerClient({ region: 'eu-west-1' }),
    autoscaling: new ApplicationAutoScalingClient({ region: 'eu-west-1' }),
    cloudwatch: new CloudWatchClient({ region: 'eu-west-1' }),
    serving: { endpointPrefix: PREFIX, endpointRoleArn: 'arn:aws:iam::123456789012:role/endpoint', successTopicArn: 'arn:aws:sns:eu-west-1:123456789012:ok', errorTopicArn: 'arn:aws:sns:eu-west-1:123456789012:err', outputPath: 's3://bucket/predictions/' },
  };
}, 120_000);
afterAll(() => f?.stop());
beforeEach(() => {
  sm.reset();
  aas.reset();
  cw.reset();
});

async function prediction(over: { serving_image?: string | null; version?: string } = {}): Promise<PredictionRecord> {
  const version = over.version ?? VERSION;
  const id = `p${process.pid}x${++seq}`;
  await f.operator.store.putVersion({
    id: version,
    model: 'acme/cjw',
    image: 'img',
    notes: null,
    training_id: 't'.repeat(20),
    template: { name: 'vanilla', repository: 'r', digest: 'd' },
    created_at: new Date().toISOString(),
    ...(over.serving_image === null ? {} : { serving_image: over.serving_image ?? IMAGE }),
  });
  const p: PredictionRecord = {
    id,
    owner: 'acme',
    model: 'acme/cjw',
    version,
    input: { prompt: 'x' },
    status: 'starting',
    created_at: new Date().toISOString(),
    started_at: null,
    completed_at: null,
    error: null,
    logs: '',
    output: null,
    predict_time: null,
    webhook: null,
    webhook_events_filter: [],
    endpoint: null,
    cancel_requested: false,
    webhook_outcome: null,
    expiration: Math.floor(Date.now() / 1000) + 86400,
  };
  await new PredictionStore(f.operator.store).create(p);
  return p;
}

const notFound = Object.assign(new Error(`Could not find endpoint "${ENDPOINT}".`), { name: 'ValidationException' });

describe('ensure', () => {
  it('creates model, configuration and endpoint on the first prediction, and says so in the logs', async () => {
    const p = await prediction();
    sm.on(DescribeEndpointCommand).rejects(notFound);
    const out = await ensureEndpoint(d, p.id, log);
    expect(out).toMatchObject({ ready: false, endpoint: ENDPOINT });
    expect(sm.commandCalls(CreateModelCommand)[0]!.args[0].input).toMatchObject({ ModelName: ENDPOINT, PrimaryContainer: { Image: IMAGE }, ExecutionRoleArn: d.serving.endpointRoleArn });
    const config = sm.commandCalls(CreateEndpointConfigCommand)[0]!.args[0].input;
    expect(config.ProductionVariants![0]).toMatchObject({ InstanceType: 'ml.g5.xlarge', InitialInstanceCount: 1 });
    expect(config.AsyncInferenceConfig!.OutputConfig).toMatchObject({ S3OutputPath: 's3://bucket/predictions/', NotificationConfig: { SuccessTopic: d.serving.successTopicArn, ErrorTopic: d.serving.errorTopicArn } });
    expect(sm.commandCalls(CreateEndpointCommand)).toHaveLength(1);
    const after = await new PredictionStore(f.operator.store).get(p.id);
    expect(after!.status).toBe('starting');
    expect(after!.logs).toMatch(/waiting: creating the endpoint/);
    expect((await new EndpointRecords(f.operator.store).get(ENDPOINT))!.last_used_at).toBeTruthy();
  });

  it('sets up scaling to zero once in service, then answers ready', async () => {
    const p = await prediction();
    await new EndpointRecords(f.operator.store).setScalingReady(ENDPOINT, false);
    sm.on(DescribeEndpointCommand).resolves({ EndpointStatus: 'InService', ProductionVariants: [{ VariantName: 'AllTraffic', CurrentInstanceCount: 1, DesiredInstanceCount: 1 }] } as never);
    aas.on(PutScalingPolicyCommand).resolves({ PolicyARN: 'arn:policy' });
    const out = await ensureEndpoint(d, p.id, log);
    expect(out.ready).toBe(true);
    expect(aas.commandCalls(RegisterScalableTargetCommand)[0]!.args[0].input).toMatchObject({ MinCapacity: 0, MaxCapacity: 1, ResourceId: `endpoint/${ENDPOINT}/variant/AllTraffic` });
    const policies = aas.commandCalls(PutScalingPolicyCommand).map((c) => c.args[0].input);
    expect(policies[0]!.TargetTrackingScalingPolicyConfiguration!.CustomizedMetricSpecification!.MetricName).toBe('ApproximateBacklogSizePerInstance');
    expect(policies[1]!.PolicyType).toBe('StepScaling');
    expect(cw.commandCalls(PutMetricAlarmCommand)[0]!.args[0].input).toMatchObject({ MetricName: 'HasBacklogWithoutCapacity', AlarmActions: ['arn:policy'] });
    expect((await new EndpointRecords(f.operator.store).get(ENDPOINT))!.scaling_ready).toBe(true);
    // Set up once: the next prediction does not do it again.
    await ensureEndpoint(d, (await prediction()).id, log);
    expect(aas.commandCalls(RegisterScalableTargetCommand)).toHaveLength(1);
  });

  it('asks for an instance when the endpoint sits at zero, and waits', async () => {
    const p = await prediction();
    await new EndpointRecords(f.operator.store).setScalingReady(ENDPOINT, true);
    sm.on(DescribeEndpointCommand).resolves({ EndpointStatus: 'InService', ProductionVariants: [{ VariantName: 'AllTraffic', CurrentInstanceCount: 0, DesiredInstanceCount: 0 }] } as never);
    const out = await ensureEndpoint(d, p.id, log);
    expect(out.ready).toBe(false);
    expect(out.detail).toMatch(/scaled to zero/);
    expect(sm.commandCalls(UpdateEndpointWeightsAndCapacitiesCommand)[0]!.args[0].input.DesiredWeightsAndCapacities).toEqual([{ VariantName: 'AllTraffic', DesiredInstanceCount: 1 }]);
  });

  it('queues the request for the scaling policy when SageMaker refuses to wake the endpoint by hand', async () => {
    const p = await prediction();
    await new EndpointRecords(f.operator.store).setScalingReady(ENDPOINT, true);
    sm.on(DescribeEndpointCommand).resolves({ EndpointStatus: 'InService', ProductionVariants: [{ VariantName: 'AllTraffic', CurrentInstanceCount: 0, DesiredInstanceCount: 0 }] } as never);
    sm.on(UpdateEndpointWeightsAndCapacitiesCommand).rejects(Object.assign(new Error('The endpoint cannot be updated'), { name: 'ValidationException' }));
    const out = await ensureEndpoint(d, p.id, log);
    expect(out).toMatchObject({ ready: true, endpoint: ENDPOINT });
    expect(out.detail).toMatch(/waits in its queue until its scaling starts one/);
  });

  it('fails a version without a serving image, saying to re-template it', async () => {
    const p = await prediction({ serving_image: null, version: 'e'.repeat(64) });
    await expect(ensureEndpoint(d, p.id, log)).rejects.toThrow(/re-template/);
    expect(sm.commandCalls(CreateModelCommand)).toHaveLength(0);
  });

  it('names the instance quota and where to raise it', async () => {
    const p = await prediction();
    sm.on(DescribeEndpointCommand).rejects(notFound);
    sm.on(CreateEndpointCommand).rejects(
      new ResourceLimitExceeded({
        message: "The account-level service limit 'ml.g5.xlarge for endpoint usage' is 0 Instances, with current utilization of 0 Instances and a request delta of 1 Instances.",
        $metadata: {},
      }),
    );
    const e = await ensureEndpoint(d, p.id, log).catch((err: Error) => err);
    expect(e).toMatchObject({ name: 'QuotaExceeded' });
    expect((e as Error).message).toMatch(/"ml\.g5\.xlarge for endpoint usage".*Service Quotas console.*Amazon SageMaker/);
  });

  it("names the account's endpoint count", async () => {
    const p = await prediction();
    sm.on(DescribeEndpointCommand).rejects(notFound);
    sm.on(CreateEndpointCommand).rejects(new ResourceLimitExceeded({ message: "The account-level service limit 'Number of endpoints' is 20 Endpoints, with current utilization of 20 Endpoints.", $metadata: {} }));
    await expect(ensureEndpoint(d, p.id, log)).rejects.toThrow(/quota "Number of endpoints" is reached/);
  });

  it('tells a capacity failure and a missing image apart', async () => {
    sm.on(DescribeEndpointCommand).resolves({ EndpointStatus: 'Failed', FailureReason: 'Unable to provision requested ML compute capacity. Please retry using a different ML instance type.' } as never);
    await expect(ensureEndpoint(d, (await prediction()).id, log)).rejects.toMatchObject({ name: 'NoCapacity', message: expect.stringMatching(/no ml\.g5\.xlarge capacity/) });
    sm.on(DescribeEndpointCommand).resolves({ EndpointStatus: 'Failed', FailureReason: `Requested image ${IMAGE} not found.` } as never);
    await expect(ensureEndpoint(d, (await prediction()).id, log)).rejects.toThrow(/serving image .* is missing from the registry/);
  });
});

describe('sweep', () => {
  it('deletes endpoints idle past serving.delete_idle_days, with their scaling, configuration and model, and keeps the others', async () => {
    const idle = `${PREFIX}idle${seq}`;
    const busy = `${PREFIX}busy${seq}`;
    const records = new EndpointRecords(f.operator.store);
    await records.touch(idle, VERSION, new Date(Date.now() - 8 * 86_400_000));
    await records.touch(busy, VERSION, new Date());
    sm.on(ListEndpointsCommand).resolves({ Endpoints: [idle, busy, 'someone-elses'].map((n) => ({ EndpointName: n, EndpointStatus: 'InService', CreationTime: new Date(0), LastModifiedTime: new Date(0), EndpointArn: n })) });
    sm.on(DeleteEndpointConfigCommand).rejects(notFound);
    const out = await sweepEndpoints(d, log);
    expect(out).toEqual({ deleted: [idle], kept: 1 });
    expect(sm.commandCalls(DeleteEndpointCommand).map((c) => c.args[0].input.EndpointName)).toEqual([idle]);
    expect(sm.commandCalls(DeleteModelCommand).map((c) => c.args[0].input.ModelName)).toEqual([idle]);
    expect(aas.commandCalls(DeregisterScalableTargetCommand)[0]!.args[0].input.ResourceId).toBe(`endpoint/${idle}/variant/AllTraffic`);
    expect(cw.commandCalls(DeleteAlarmsCommand)[0]!.args[0].input.AlarmNames).toEqual([`${idle}-backlog-without-capacity`]);
    expect(await records.get(idle)).toBeNull();
    expect(await records.get(busy)).not.toBeNull();
  });
});
