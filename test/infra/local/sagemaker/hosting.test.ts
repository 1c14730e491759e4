/**
 * Local mode's SageMaker hosting, driven by the real SDK clients through local IAM: a
 * demo-template endpoint created, invoked asynchronously (input and output in local S3, read
 * and written as the model's role, the notification delivered to the subscribed function),
 * scaled to zero and back by its scalable target; and what SageMaker refuses.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DeregisterScalableTargetCommand,
  DescribeScalableTargetsCommand,
  PutScalingPolicyCommand,
  RegisterScalableTargetCommand,
  ApplicationAutoScalingClient,
} from '@aws-sdk/client-application-auto-scaling';
import { CloudWatchClient, DeleteAlarmsCommand, PutMetricAlarmCommand } from '@aws-sdk/client-cloudwatch';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateEndpointCommand,
  CreateEndpointConfigCommand,
  CreateModelCommand,
  DeleteEndpointCommand,
  DescribeEndpointCommand,
  ListEndpointsCommand,
  SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import { InvokeEndpointAsyncCommand, SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil, startLocalAws, type LocalAws } from '#infra/local/aws';
import { LOCAL_BUCKET, topicArn } from '#infra/local/names';
import { OciLayout } from '#shared/oci/layout';
import { AsyncInferenceNotification, SnsEvent } from '#shared/serving/notification';
import { PNG_SIGNATURE } from '#serving/demo-template/png';
import { pushLabelledImage } from '#test-helpers/serving-image';
import { testTable } from '#test-helpers/table';
import { waitingMachine } from '#test-helpers/waiting-machine';

const ROLE = 'ModelRole';
const ROLE_ARN = `arn:aws:iam::000000000000:role/${ROLE}`;
const SUCCESS = topicArn('SuccessTopic');
const ERROR = topicArn('ErrorTopic');
const allow = (Action: string | string[], Resource: string | string[], Condition?: Record<string, Record<string, string>>) => ({ Effect: 'Allow' as const, Action, Resource, ...(Condition ? { Condition } : {}) });

const policies = {
  caller: {
    role: 'CallerRole',
    statements: [
      allow(['sagemaker:CreateModel', 'sagemaker:CreateEndpointConfig', 'sagemaker:CreateEndpoint', 'sagemaker:DescribeEndpoint', 'sagemaker:DeleteEndpoint', 'sagemaker:InvokeEndpointAsync'], 'arn:aws:sagemaker:us-east-1:000000000000:*'),
      allow('sagemaker:ListEndpoints', '*'),
      allow('iam:PassRole', ROLE_ARN, { StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } }),
      allow(['application-autoscaling:*'], '*'),
      allow(['cloudwatch:PutMetricAlarm', 'cloudwatch:DeleteAlarms'], 'arn:aws:cloudwatch:us-east-1:000000000000:alarm:*'),
      allow(['s3:PutObject', 's3:GetObject'], `arn:aws:s3:::${LOCAL_BUCKET}/predictions/*`),
    ],
  },
  [ROLE]: { role: ROLE, statements: [allow(['s3:GetObject', 's3:PutObject'], `arn:aws:s3:::${LOCAL_BUCKET}/predictions/*`)] },
  stranger: { role: 'StrangerRole', statements: [allow('sagemaker:DescribeEndpoint', '*')] },
};

let dataDir: string;
let local: LocalAws;
let image: string;
const notifications: AsyncInferenceNotification[] = [];

const clients = (principal: string) => {
  const common = { region: 'us-east-1', credentials: local.iam!.credentials(principal) };
  return {
    sagemaker: new SageMakerClient({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_SAGEMAKER }),
    runtime: new SageMakerRuntimeClient({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME }),
    scaling: new ApplicationAutoScalingClient({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING }),
    cloudwatch: new CloudWatchClient({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_CLOUDWATCH }),
    s3: new S3Client({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_S3, forcePathStyle: true }),
  };
};
let c: ReturnType<typeof clients>;

/** Resolves with the notification of `inferenceId` once the subscribed function has it. */
const notified = (inferenceId: string) =>
  pollUntil(() => notifications.find((n) => n.inferenceId === inferenceId), { what: `the notification of ${inferenceId}`, timeoutMs: 20_000 });

const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a refusal'); }, (e: Error) => e);

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'hosting-'));
  const layout = join(dataDir, 'images');
  await pushLabelledImage(new OciLayout(layout), '', 'demo', { 'ai.dreambooth.demo-template': '1', 'ai.dreambooth.weights-digest': `sha256:${'c'.repeat(64)}` });
  await pushLabelledImage(new OciLayout(layout), '', 'cog', { 'run.cog.version': '0.9.26' });
  image = `oci:${layout}:demo`;
  local = await startLocalAws({
    dataDir,
    table: testTable(),
    definition: waitingMachine('Wait', 'starter'),
    taskHandlers: { Wait: async () => undefined },
    secrets: {},
    lambdas: {
      notified: async (event) => {
        for (const r of SnsEvent.parse(event).Records) notifications.push(AsyncInferenceNotification.parse(JSON.parse(r.Sns.Message)));
      },
    },
    subscriptions: { [SUCCESS]: ['notified'], [ERROR]: ['notified'] },
    iam: policies,
  });
  c = clients('caller');
}, 60_000);

afterAll(async () => {
  await local?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

async function endpointFor(name: string, modelImage = image): Promise<void> {
  await c.sagemaker.send(new CreateModelCommand({ ModelName: name, ExecutionRoleArn: ROLE_ARN, PrimaryContainer: { Image: modelImage } }));
  await c.sagemaker.send(
    new CreateEndpointConfigCommand({
      EndpointConfigName: name,
      ProductionVariants: [{ VariantName: 'AllTraffic', ModelName: name, InstanceType: 'ml.g5.xlarge', InitialInstanceCount: 1 }],
      AsyncInferenceConfig: {
        OutputConfig: { S3OutputPath: `s3://${LOCAL_BUCKET}/predictions/out/`, S3FailurePath: `s3://${LOCAL_BUCKET}/predictions/failed/`, NotificationConfig: { SuccessTopic: SUCCESS, ErrorTopic: ERROR } },
      },
    }),
  );
  const created = await c.sagemaker.send(new CreateEndpointCommand({ EndpointName: name, EndpointConfigName: name }));
  expect(created.EndpointArn).toBe(`arn:aws:sagemaker:us-east-1:000000000000:endpoint/${name.toLowerCase()}`);
}

const status = async (name: string) => (await c.sagemaker.send(new DescribeEndpointCommand({ EndpointName: name })));
const inService = (name: string) => pollUntil(async () => ((await status(name)).EndpointStatus === 'InService' ? true : undefined), { what: `${name} in service` });

async function invoke(endpoint: string, id: string, input: unknown) {
  const key = `predictions/${id}/request.json`;
  await c.s3.send(new PutObjectCommand({ Bucket: LOCAL_BUCKET, Key: key, Body: JSON.stringify({ input, id }) }));
  return c.runtime.send(new InvokeEndpointAsyncCommand({ EndpointName: endpoint, InputLocation: `s3://${LOCAL_BUCKET}/${key}`, InferenceId: id, ContentType: 'application/json' }));
}

async function output(location: string): Promise<{ status: string; output: string[] | null; error: string | null }> {
  const [, bucket, key] = /^s3:\/\/([^/]+)\/(.+)$/.exec(location)!;
  const body = await c.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return JSON.parse(await body.Body!.transformToString());
}

describe('a demo-template endpoint', () => {
  it('is created, serves an asynchronous request from S3 to S3 and notifies the subscribed function', async () => {
    await endpointFor('Demo-1');
    expect((await status('Demo-1')).EndpointStatus).toMatch(/Creating|InService/);
    await inService('Demo-1');
    expect((await status('Demo-1')).ProductionVariants?.[0]?.CurrentInstanceCount).toBe(1);

    const answer = await invoke('Demo-1', 'p-one', { prompt: 'a photo of cjw person on the moon', seed: 1 });
    expect(answer).toMatchObject({ InferenceId: 'p-one', OutputLocation: `s3://${LOCAL_BUCKET}/predictions/out/p-one.out` });
    const n = await notified('p-one');
    expect(n).toMatchObject({ invocationStatus: 'Completed', requestParameters: { endpointName: 'Demo-1' }, responseParameters: { outputLocation: answer.OutputLocation } });
    const result = await output(answer.OutputLocation!);
    expect(result.status).toBe('succeeded');
    const png = Buffer.from(result.output![0]!.replace(/^data:image\/png;base64,/, ''), 'base64');
    expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE);

    const listed = await c.sagemaker.send(new ListEndpointsCommand({}));
    expect(listed.Endpoints?.map((e) => e.EndpointName)).toContain('Demo-1');
  });

  it("notifies the error topic with the model's failure", async () => {
    const answer = await invoke('Demo-1', 'p-bad', { seed: 2 });
    const n = await notified('p-bad');
    expect(n.invocationStatus).toBe('Failed');
    expect(n.failureReason).toMatch(/422/);
    expect(n.responseParameters.failureLocation).toBe(`s3://${LOCAL_BUCKET}/predictions/failed/p-bad-error.out`);
    expect(answer.InferenceId).toBe('p-bad');
  });

  it('scales to zero when idle and back when a request comes', async () => {
    await endpointFor('Demo-2');
    await inService('Demo-2');
    const target = { ServiceNamespace: 'sagemaker' as const, ResourceId: 'endpoint/Demo-2/variant/AllTraffic', ScalableDimension: 'sagemaker:variant:DesiredInstanceCount' as const };
    await c.scaling.send(new RegisterScalableTargetCommand({ ...target, MinCapacity: 0, MaxCapacity: 2 }));
    await c.scaling.send(
      new PutScalingPolicyCommand({
        ...target,
        PolicyName: 'backlog',
        PolicyType: 'TargetTrackingScaling',
        TargetTrackingScalingPolicyConfiguration: { TargetValue: 1, ScaleInCooldown: 0, CustomizedMetricSpecification: { MetricName: 'ApproximateBacklogSizePerInstance', Namespace: 'AWS/SageMaker', Statistic: 'Average' } },
      }),
    );
    await c.scaling.send(
      new PutScalingPolicyCommand({
        ...target,
        PolicyName: 'leave-zero',
        PolicyType: 'StepScaling',
        StepScalingPolicyConfiguration: { AdjustmentType: 'ChangeInCapacity', StepAdjustments: [{ MetricIntervalLowerBound: 0, ScalingAdjustment: 1 }] },
      }),
    );
    await c.cloudwatch.send(new PutMetricAlarmCommand({ AlarmName: 'Demo-2-backlog', MetricName: 'HasBacklogWithoutCapacity', Namespace: 'AWS/SageMaker', ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 1, Threshold: 1, Period: 60, Statistic: 'Average' }));
    expect((await c.scaling.send(new DescribeScalableTargetsCommand({ ServiceNamespace: 'sagemaker', ResourceIds: [target.ResourceId] }))).ScalableTargets).toHaveLength(1);

    // A request scales the endpoint to the backlog; idle, it goes back to the minimum: zero.
    await invoke('Demo-2', 'p-warm', { prompt: 'warm' });
    await notified('p-warm');
    const count = async () => (await status('Demo-2')).ProductionVariants?.[0]?.CurrentInstanceCount;
    await pollUntil(async () => ((await count()) === 0 ? true : undefined), { what: 'Demo-2 at zero instances' });
    expect((await status('Demo-2')).EndpointStatus).toBe('InService');

    const cold = await invoke('Demo-2', 'p-cold', { prompt: 'from zero' });
    expect((await notified('p-cold')).invocationStatus).toBe('Completed');
    expect((await output(cold.OutputLocation!)).status).toBe('succeeded');
    await pollUntil(async () => ((await count()) === 0 ? true : undefined), { what: 'Demo-2 back at zero' });

    await c.cloudwatch.send(new DeleteAlarmsCommand({ AlarmNames: ['Demo-2-backlog'] }));
    await c.scaling.send(new DeregisterScalableTargetCommand(target));
    await c.sagemaker.send(new DeleteEndpointCommand({ EndpointName: 'Demo-2' }));
    expect((await failure(status('Demo-2'))).message).toMatch(/Could not find endpoint/);
  });
});

describe('what SageMaker refuses', () => {
  it('refuses bad names, missing references, duplicates and unknown endpoints with its error codes', async () => {
    const bad = await failure(c.sagemaker.send(new CreateEndpointCommand({ EndpointName: 'bad_name', EndpointConfigName: 'x' })));
    expect(bad.name).toBe('ValidationException');
    expect(bad.message).toMatch(/failed to satisfy constraint/);
    const config = await failure(
      c.sagemaker.send(new CreateEndpointConfigCommand({ EndpointConfigName: 'orphan', ProductionVariants: [{ VariantName: 'AllTraffic', ModelName: 'missing', InitialInstanceCount: 1 }] })),
    );
    expect(config.message).toMatch(/Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model\/missing"/);
    const missing = await failure(c.sagemaker.send(new CreateEndpointCommand({ EndpointName: 'lonely', EndpointConfigName: 'missing' })));
    expect(missing.message).toMatch(/Could not find endpoint configuration/);
    const again = await failure(c.sagemaker.send(new CreateModelCommand({ ModelName: 'Demo-1', ExecutionRoleArn: ROLE_ARN, PrimaryContainer: { Image: image } })));
    expect(again.message).toMatch(/Cannot create already existing model/);
    const gone = await failure(c.sagemaker.send(new CreateModelCommand({ ModelName: 'gone', ExecutionRoleArn: ROLE_ARN, PrimaryContainer: { Image: `${image}-gone` } })));
    expect(gone.name).toBe('ValidationException');
    expect(gone.message).toMatch(/not found/);
    const unknown = await failure(invoke('nowhere', 'p-x', { prompt: 'x' }));
    expect(unknown.name).toBe('ValidationError');
    expect((await failure(status('nowhere'))).name).toBe('ValidationException');
  });

  it('refuses what the caller\'s policies do not allow, as IAM does', async () => {
    const stranger = clients('stranger');
    const denied = await failure(stranger.sagemaker.send(new CreateModelCommand({ ModelName: 'mine', ExecutionRoleArn: ROLE_ARN, PrimaryContainer: { Image: image } })));
    expect(denied.name).toBe('AccessDeniedException');
    expect(denied.message).toMatch(/sagemaker:CreateModel on resource: arn:aws:sagemaker:us-east-1:000000000000:model\/mine/);
    const invoked = await failure(stranger.runtime.send(new InvokeEndpointAsyncCommand({ EndpointName: 'Demo-1', InputLocation: `s3://${LOCAL_BUCKET}/predictions/x` })));
    expect(invoked.message).toMatch(/sagemaker:InvokeEndpointAsync on resource: arn:aws:sagemaker:us-east-1:000000000000:endpoint\/demo-1/);
    expect(local.iam!.denials.map((d) => d.action)).toEqual(expect.arrayContaining(['sagemaker:CreateModel', 'sagemaker:InvokeEndpointAsync']));
  });

  it.skipIf(Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock'))(
    'fails an endpoint whose image needs a docker engine, saying so',
    async () => {
      await endpointFor('Cog-1', image.replace(/:demo$/, ':cog'));
      const failed = await pollUntil(async () => {
        const s = await status('Cog-1');
        return s.EndpointStatus === 'Failed' ? s : undefined;
      }, { what: 'Cog-1 failed' });
      expect(failed.FailureReason).toMatch(/docker engine/);
    },
  );
});
