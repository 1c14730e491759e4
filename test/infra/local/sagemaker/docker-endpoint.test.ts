/**
 * Local mode's SageMaker hosting with a real container: a version's SageMaker variant (the
 * build's adapter layer over a Cog-like image made from the machine's Python) runs on the docker
 * engine as `<image> serve`, behind the asynchronous-inference stand-in, driven by the real SDK
 * clients through local IAM: input read from S3 and output written there as the model's role,
 * the notification delivered to the subscribed function. Needs a docker engine and a registry:
 * skipped with the reason outside CI, a failure in CI.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateEndpointCommand,
  CreateEndpointConfigCommand,
  CreateModelCommand,
  DeleteEndpointCommand,
  DescribeEndpointCommand,
  SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import { InvokeEndpointAsyncCommand, SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil, startLocalAws, type LocalAws } from '#infra/local/aws';
import { ENDPOINT_OWNER_LABEL, endpointOwnerOf } from '#infra/local/sagemaker/inference-container';
import { LOCAL_BUCKET, topicArn } from '#infra/local/names';
import { AsyncInferenceNotification, SnsEvent } from '#shared/serving/notification';
import { PNG_SIGNATURE } from '#serving/demo-template/png';
import { requireDocker, requireRegistry } from '#test-helpers/capabilities';
import { startRegistry, type TestRegistry } from '#test-helpers/registry';
import { buildRunnableServingImage } from '#test-helpers/runnable-serving-image';
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
      allow('iam:PassRole', ROLE_ARN, { StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } }),
      allow(['s3:PutObject', 's3:GetObject'], `arn:aws:s3:::${LOCAL_BUCKET}/predictions/*`),
    ],
  },
  [ROLE]: { role: ROLE, statements: [allow('s3:GetObject', `arn:aws:s3:::${LOCAL_BUCKET}/predictions/*/request.json`), allow('s3:PutObject', `arn:aws:s3:::${LOCAL_BUCKET}/predictions/*.out`)] },
};

const skipped = 'serving a SageMaker variant in a container (it builds and runs an image)';
const runs = !requireDocker(skipped).skip && !requireRegistry(skipped).skip;

/** The endpoint's containers, by the name prefix instances.ts gives them. */
const containersOf = (endpoint: string, all = true) =>
  execFileSync('docker', ['ps', ...(all ? ['-a'] : []), '-q', '--filter', `name=^sagemaker-${endpoint.toLowerCase()}-`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);

describe.skipIf(!runs)('an endpoint whose instance is a container on the docker engine', () => {
  let dataDir: string;
  let local: LocalAws;
  let own: TestRegistry | undefined;
  let image: string;
  let sagemaker: SageMakerClient;
  let runtime: SageMakerRuntimeClient;
  let s3: S3Client;
  const notifications: AsyncInferenceNotification[] = [];

  beforeAll(async () => {
    const host = process.env.DREAMBOOTH_TEST_REGISTRY ?? (own = await startRegistry()).host;
    ({ serving: image } = await buildRunnableServingImage(host, `serving-docker/cog-${process.pid}`));
    dataDir = mkdtempSync(join(tmpdir(), 'docker-endpoint-'));
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
    const common = { region: 'us-east-1', credentials: local.iam!.credentials('caller') };
    sagemaker = new SageMakerClient({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_SAGEMAKER });
    runtime = new SageMakerRuntimeClient({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME });
    s3 = new S3Client({ ...common, endpoint: local.env.AWS_ENDPOINT_URL_S3, forcePathStyle: true });
  }, 300_000);

  afterAll(async () => {
    await local?.stop();
    await own?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  async function endpointFor(name: string, environment?: Record<string, string>): Promise<void> {
    await sagemaker.send(new CreateModelCommand({ ModelName: name, ExecutionRoleArn: ROLE_ARN, PrimaryContainer: { Image: image, Environment: environment } }));
    await sagemaker.send(
      new CreateEndpointConfigCommand({
        EndpointConfigName: name,
        ProductionVariants: [{ VariantName: 'AllTraffic', ModelName: name, InstanceType: 'ml.g5.xlarge', InitialInstanceCount: 1 }],
        AsyncInferenceConfig: {
          OutputConfig: { S3OutputPath: `s3://${LOCAL_BUCKET}/predictions/`, S3FailurePath: `s3://${LOCAL_BUCKET}/predictions/`, NotificationConfig: { SuccessTopic: SUCCESS, ErrorTopic: ERROR } },
        },
      }),
    );
    await sagemaker.send(new CreateEndpointCommand({ EndpointName: name, EndpointConfigName: name }));
  }

  /** The endpoint once it has left Creating. */
  const settled = (name: string) =>
    pollUntil(
      async () => {
        const s = await sagemaker.send(new DescribeEndpointCommand({ EndpointName: name }));
        return s.EndpointStatus === 'Creating' ? undefined : s;
      },
      { what: `${name} to leave Creating`, timeoutMs: 120_000, intervalMs: 250 },
    );

  async function invoke(endpoint: string, id: string, input: unknown) {
    const key = `predictions/${id}/request.json`;
    await s3.send(new PutObjectCommand({ Bucket: LOCAL_BUCKET, Key: key, Body: JSON.stringify({ input, id }) }));
    return runtime.send(new InvokeEndpointAsyncCommand({ EndpointName: endpoint, InputLocation: `s3://${LOCAL_BUCKET}/${key}`, InferenceId: id, ContentType: 'application/json' }));
  }

  const notified = (id: string) => pollUntil(() => notifications.find((n) => n.inferenceId === id), { what: `the notification of ${id}`, timeoutMs: 60_000 });

  async function read(location: string): Promise<any> {
    const [, Bucket, Key] = /^s3:\/\/([^/]+)\/(.+)$/.exec(location)!;
    return JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket, Key }))).Body!.transformToString());
  }

  it("serves asynchronous requests from S3 to S3: a prediction, the model's own failure, a refused input, a crash", async () => {
    await endpointFor('Cog-1');
    const endpoint = await settled('Cog-1');
    expect(endpoint.FailureReason).toBeUndefined();
    expect(endpoint.EndpointStatus).toBe('InService');
    expect(containersOf('Cog-1')).toHaveLength(1);
    // Labelled with this local mode, whose next start removes it if this one dies with it up.
    const label = execFileSync('docker', ['inspect', '--format', `{{index .Config.Labels "${ENDPOINT_OWNER_LABEL}"}}`, containersOf('Cog-1')[0]!], { encoding: 'utf8' }).trim();
    expect(label).toBe(endpointOwnerOf(dataDir));

    const answer = await invoke('Cog-1', 'p-ok', { prompt: 'a photo of cjw person on the moon' });
    expect(answer.OutputLocation).toBe(`s3://${LOCAL_BUCKET}/predictions/p-ok.out`);
    const ok = await notified('p-ok');
    expect(ok).toMatchObject({ invocationStatus: 'Completed', requestParameters: { endpointName: 'Cog-1' }, responseParameters: { outputLocation: answer.OutputLocation } });
    const result = await read(answer.OutputLocation!);
    expect(result).toMatchObject({ id: 'p-ok', status: 'succeeded', error: null });
    expect(result.metrics.predict_time).toBeGreaterThan(0);
    const png = Buffer.from(String(result.output[0]).replace(/^data:image\/png;base64,/, ''), 'base64');
    expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE);

    // The model's own failure is Cog's answer (200): a completed request whose prediction failed.
    const failing = await invoke('Cog-1', 'p-model-error', { prompt: 'x', fail_with: 'CUDA out of memory' });
    expect((await notified('p-model-error')).invocationStatus).toBe('Completed');
    expect(await read(failing.OutputLocation!)).toMatchObject({ status: 'failed', error: 'CUDA out of memory' });

    // An input Cog refuses: the error topic, and Cog's detail at the failure location.
    const refused = await invoke('Cog-1', 'p-refused', { seed: 1 });
    const n = await notified('p-refused');
    expect(n.invocationStatus).toBe('Failed');
    expect(n.failureReason).toMatch(/\(422\)/);
    expect(n.responseParameters.failureLocation).toBe(`s3://${LOCAL_BUCKET}/predictions/p-refused-error.out`);
    expect(refused.InferenceId).toBe('p-refused');
    expect((await read(n.responseParameters.failureLocation!)).detail[0].loc).toEqual(['body', 'input', 'prompt']);

    // The model server dies mid-request: the request fails, and the instance is replaced, as
    // SageMaker replaces an unhealthy instance.
    const [first] = containersOf('Cog-1', false);
    await invoke('Cog-1', 'p-crash', { prompt: 'x', exit_with: 137 });
    const crashed = await notified('p-crash');
    expect(crashed.invocationStatus).toBe('Failed');
    expect(crashed.failureReason).toMatch(/\(502\)/);
    expect((await read(crashed.responseParameters.failureLocation!)).detail).toMatch(/exited with status 137 during the prediction/);
    const [second] = await pollUntil(() => {
      const running = containersOf('Cog-1', false);
      return running.length === 1 && running[0] !== first ? running : undefined;
    }, { what: 'a new container for Cog-1', timeoutMs: 60_000, intervalMs: 250 });
    expect(second).not.toBe(first);
    const after = await invoke('Cog-1', 'p-after', { prompt: 'after the crash' });
    expect((await notified('p-after')).invocationStatus).toBe('Completed');
    expect(await read(after.OutputLocation!)).toMatchObject({ status: 'succeeded' });

    await sagemaker.send(new DeleteEndpointCommand({ EndpointName: 'Cog-1' }));
    await pollUntil(() => (containersOf('Cog-1').length === 0 ? true : undefined), { what: 'the container of Cog-1 removed', timeoutMs: 60_000, intervalMs: 250 });
  }, 180_000);

  it("removes, at its start, the endpoint containers a killed run of the same local mode left, and no other's", async () => {
    const killedDir = mkdtempSync(join(tmpdir(), 'docker-endpoint-killed-'));
    const other = endpointOwnerOf(join(killedDir, 'another'));
    const create = (owner: string) => execFileSync('docker', ['create', '--label', `${ENDPOINT_OWNER_LABEL}=${owner}`, image, 'serve'], { encoding: 'utf8' }).trim();
    const left = [create(endpointOwnerOf(killedDir)), create(endpointOwnerOf(killedDir))];
    const others = create(other);
    const byOwner = (owner: string) =>
      execFileSync('docker', ['ps', '-aq', '--no-trunc', '--filter', `label=${ENDPOINT_OWNER_LABEL}=${owner}`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    expect(byOwner(endpointOwnerOf(killedDir)).sort()).toEqual([...left].sort());
    const lines: string[] = [];
    const again = await startLocalAws({
      dataDir: killedDir,
      table: testTable(),
      definition: waitingMachine('Wait', 'starter'),
      taskHandlers: { Wait: async () => undefined },
      secrets: {},
      lambdas: {},
      log: (l) => lines.push(l),
    });
    try {
      await pollUntil(() => (byOwner(endpointOwnerOf(killedDir)).length === 0 ? true : undefined), { what: "the killed run's containers removed", timeoutMs: 60_000, intervalMs: 250 });
      expect(lines).toContain('removed 2 endpoint container(s) an earlier run left behind');
      expect(byOwner(other)).toEqual([others]);
    } finally {
      await again.stop();
      execFileSync('docker', ['rm', '-f', others]);
      rmSync(killedDir, { recursive: true, force: true });
    }
  }, 120_000);

  it("fails the endpoint with the model's setup failure, its environment being the model's", async () => {
    await endpointFor('Cog-2', { FAKE_COG_SETUP: 'fail' });
    const endpoint = await settled('Cog-2');
    expect(endpoint.EndpointStatus).toBe('Failed');
    expect(endpoint.FailureReason).toMatch(/did not pass the ping health check/);
    expect(endpoint.FailureReason).toMatch(/setup failed \(SETUP_FAILED\)/);
    expect(endpoint.FailureReason).toMatch(/weights not found/);
    expect(containersOf('Cog-2')).toEqual([]);
  }, 120_000);
});
