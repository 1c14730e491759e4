/**
 * prediction-endpoint for a weights version: one endpoint per template digest, whose image is
 * the template's SageMaker variant. In local mode (a template in an image layout) the variant is
 * pushed once, then found by its tag; on AWS a CodeBuild build makes it, started once for
 * concurrent predictions and checked on each poll. DynamoDB is the local fixture's; SageMaker
 * and CodeBuild are mocks, since only AWS runs them.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationAutoScalingClient } from '@aws-sdk/client-application-auto-scaling';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { BatchGetBuildsCommand, CodeBuildClient, StartBuildCommand } from '@aws-sdk/client-codebuild';
import { CreateModelCommand, DescribeEndpointCommand, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { logger } from '#shared/log';
import { OciLayout } from '#shared/oci/layout';
import { servingTag } from '#shared/oci/serving-variant';
import type { ImageStore } from '#shared/oci/types';
import { createDemoTemplate } from '#shared/oci/template';
import type { PredictionRecord } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { EndpointRecords } from '#shared/serving/endpoint-record';
import { endpointKeyOf, endpointNameFor } from '#shared/serving/endpoints';
import { directTemplateVariants, templateVariants } from '#shared/serving/template-variant';
import { buildTemplateVariants } from '#shared/serving/template-variant-build';
import type { VersionRecord } from '#shared/store';
import { type EndpointDeps, ensureEndpoint } from '#lambdas/prediction-endpoint/core';
import { repoFile } from '#test-helpers/paths';
import { type Fixture, startFixture } from '#test-helpers/aws-local';

const PREFIX = 'db-0123abcd-p-';
const TEMPLATES = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/dreambooth/templates';
const sm = mockClient(SageMakerClient);
const cb = mockClient(CodeBuildClient);
const log = logger('test');
const notFound = Object.assign(new Error('Could not find endpoint.'), { name: 'ValidationException' });

let f: Fixture;
let root: string;
let base: Omit<EndpointDeps, 'templateVariants'>;
let seq = 0;

beforeAll(async () => {
  f = await startFixture({ as: 'prediction-endpoint' });
  root = await mkdtemp(join(tmpdir(), 'weights-endpoint-'));
  base = {
    ...f.deps,
    sagemaker: new SageMakerClient({ region: 'eu-west-1' }),
    autoscaling: new ApplicationAutoScalingClient({ region: 'eu-west-1' }),
    cloudwatch: new CloudWatchClient({ region: 'eu-west-1' }),
    serving: { endpointPrefix: PREFIX, endpointRoleArn: 'arn:aws:iam::123456789012:role/endpoint', successTopicArn: 'arn:aws:sns:eu-west-1:123456789012:ok', errorTopicArn: 'arn:aws:sns:eu-west-1:123456789012:err', outputPath: 's3://bucket/predictions/' },
  };
}, 120_000);
afterAll(async () => {
  await f?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});
beforeEach(() => {
  sm.reset();
  cb.reset();
  sm.on(DescribeEndpointCommand).rejects(notFound);
});

/** A weights version of the template (`repository`, `digest`) and a prediction on it. */
async function prediction(template: { repository: string; digest: string }): Promise<{ p: PredictionRecord; version: VersionRecord }> {
  const n = ++seq;
  const version: VersionRecord = {
    id: `${n}`.padStart(64, 'e'),
    model: 'acme/lora',
    image: `${template.repository}@sha256:${template.digest}`,
    notes: null,
    training_id: `t${n}`.padEnd(20, 't'),
    template: { name: 'demo', repository: template.repository, digest: template.digest, weights_input: 'replicate_weights' },
    weights: { key: `weights/${'a'.repeat(64)}`, size: 10, sha256: 'a'.repeat(64), input: 'replicate_weights' },
    created_at: new Date().toISOString(),
  };
  await f.operator.store.putVersion(version);
  const p: PredictionRecord = {
    id: `w${process.pid}x${n}`,
    owner: 'acme',
    model: 'acme/lora',
    version: version.id,
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
  return { p, version };
}

const modelImages = () => sm.commandCalls(CreateModelCommand).map((c) => c.args[0].input.PrimaryContainer!.Image);

describe('a weights version in local mode (the template in an image layout)', () => {
  it('pushes the variant once, then finds it by its tag, on one endpoint named by the template digest', async () => {
    const dir = join(root, 'layout');
    const layout = new OciLayout(dir);
    const digest = (await createDemoTemplate(layout, '', 'latest')).replace(/^sha256:/, '');
    const template = { repository: `oci:${dir}`, digest };
    let reads = 0;
    const adapter = () => {
      reads++;
      return readFile(repoFile('serving/sagemaker_adapter.py'));
    };
    const d = { ...base, templateVariants: templateVariants(directTemplateVariants(adapter)) };
    const first = await prediction(template);
    const out = await ensureEndpoint(d, first.p.id, log);
    const endpoint = endpointNameFor(PREFIX, endpointKeyOf(first.version));
    expect(endpoint).toContain(digest.slice(0, 20));
    expect(out).toMatchObject({ ready: false, endpoint });
    expect(reads).toBe(1);
    const pushed = await layout.getManifest('', servingTag(digest));
    expect(modelImages()).toEqual([(layout as ImageStore).reference('', servingTag(digest), pushed.digest)]);
    expect(sm.commandCalls(CreateModelCommand)[0]!.args[0].input.Tags).toEqual([{ Key: 'dreambooth:template', Value: digest }]);

    // A second deployment's step (a fresh container) finds the variant by its tag and pushes nothing.
    const again = { ...base, templateVariants: templateVariants(directTemplateVariants(adapter)) };
    const second = await prediction(template);
    await ensureEndpoint(again, second.p.id, log);
    expect(reads).toBe(1);
    expect(modelImages()).toEqual([modelImages()[0], modelImages()[0]]);
    expect(endpointNameFor(PREFIX, endpointKeyOf(second.version))).toBe(endpoint);
  });
});

describe('a weights version on AWS (the template on its own registry)', () => {
  const digest = 'f'.repeat(64);
  const template = { repository: 'r8.im/acme/flux-lora', digest };
  const refuseDirect = () => Promise.reject(new Error('the direct path must not be taken'));
  const deps = () => ({
    ...base,
    templateVariants: templateVariants(directTemplateVariants(refuseDirect), buildTemplateVariants({ ...base, codebuild: new CodeBuildClient({ region: 'eu-west-1' }) }, { project: 'variants', repositoryPrefix: TEMPLATES })),
  });
  const predictions = () => new PredictionStore(f.operator.store);

  it('starts one build for concurrent predictions, waits while it runs, then creates the endpoint on the tag it pushed', async () => {
    cb.on(StartBuildCommand).resolves({ build: { id: 'variants:1' } });
    const [a, b] = await Promise.all([prediction(template), prediction(template)]);
    const d = deps();
    const outs = await Promise.all([ensureEndpoint(d, a.p.id, log), ensureEndpoint(d, b.p.id, log)]);
    for (const out of outs) expect(out.ready).toBe(false);
    expect(cb.commandCalls(StartBuildCommand)).toHaveLength(1);
    expect(cb.commandCalls(StartBuildCommand)[0]!.args[0].input).toMatchObject({
      projectName: 'variants',
      environmentVariablesOverride: [
        { name: 'SOURCE_IMAGE', value: `r8.im/acme/flux-lora@sha256:${digest}` },
        { name: 'TARGET_REPOSITORY', value: `${TEMPLATES}/demo` },
      ],
    });
    expect(sm.commandCalls(CreateModelCommand)).toHaveLength(0);
    for (const x of [a, b]) {
      const after = await predictions().get(x.p.id);
      expect(after!.status).toBe('starting');
      expect(after!.logs).toMatch(/^waiting: making the SageMaker image of the template demo/);
    }
    const endpoint = endpointNameFor(PREFIX, endpointKeyOf(a.version));
    expect((await new EndpointRecords(f.operator.store).get(endpoint))!.variant_build).toBe('variants:1');

    cb.on(BatchGetBuildsCommand).resolves({ builds: [{ id: 'variants:1', buildStatus: 'IN_PROGRESS' }] });
    expect((await ensureEndpoint(d, a.p.id, log)).ready).toBe(false);
    expect(sm.commandCalls(CreateModelCommand)).toHaveLength(0);

    cb.on(BatchGetBuildsCommand).resolves({ builds: [{ id: 'variants:1', buildStatus: 'SUCCEEDED' }] });
    const out = await ensureEndpoint(d, a.p.id, log);
    expect(out).toMatchObject({ ready: false, endpoint });
    expect(modelImages()).toEqual([`${TEMPLATES}/demo:${servingTag(digest)}`]);
    expect(cb.commandCalls(StartBuildCommand)).toHaveLength(1);

    // Later predictions take the recorded image without asking CodeBuild.
    const calls = cb.calls().length;
    await ensureEndpoint(d, b.p.id, log);
    expect(cb.calls().length).toBe(calls);
  });

  it("fails the prediction with the build's reason, and the next prediction builds again", async () => {
    const other = { ...template, digest: 'd'.repeat(64) };
    cb.on(StartBuildCommand).resolves({ build: { id: 'variants:2' } });
    const { p } = await prediction(other);
    const d = deps();
    await ensureEndpoint(d, p.id, log);
    cb.on(BatchGetBuildsCommand).resolves({
      builds: [{ id: 'variants:2', buildStatus: 'FAILED', phases: [{ phaseType: 'BUILD', phaseStatus: 'FAILED', contexts: [{ statusCode: 'COMMAND_EXECUTION_ERROR', message: 'Error while executing command: node mirror-image.mjs. Reason: exit status 1' }] }] }],
    });
    await expect(ensureEndpoint(d, p.id, log)).rejects.toMatchObject({
      name: 'EndpointFailed',
      message: expect.stringMatching(/SageMaker variant of the template r8\.im\/acme\/flux-lora@sha256:d+ could not be made: its build variants:2 ended failed: Error while executing command: node mirror-image\.mjs/),
    });
    cb.on(StartBuildCommand).resolves({ build: { id: 'variants:3' } });
    const next = await prediction(other);
    await ensureEndpoint(d, next.p.id, log);
    expect(cb.commandCalls(StartBuildCommand)).toHaveLength(2);
  });
});
