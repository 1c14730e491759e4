/**
 * "Make sure the endpoint is ready": the version's endpoint (for a weights version, its template's,
 * shared by all of them), made on its first prediction (model, endpoint configuration, endpoint:
 * one name), its scaling set up once it is in
 * service, and woken when it sits at zero instances. Each call looks once and answers; the
 * state machine waits and asks again while the answer is not ready. Every step is idempotent,
 * so a stopped execution leaves nothing a later prediction would not finish.
 */
import type { ApplicationAutoScalingClient } from '@aws-sdk/client-application-auto-scaling';
import type { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import {
  CreateEndpointCommand,
  CreateEndpointConfigCommand,
  CreateModelCommand,
  DeleteEndpointCommand,
  DescribeEndpointCommand,
  type DescribeEndpointCommandOutput,
  type SageMakerClient,
  UpdateEndpointWeightsAndCapacitiesCommand,
} from '@aws-sdk/client-sagemaker';
import type { BaseDeps } from '#shared/deps';
import type { Logger } from '#shared/log';
import { PredictionStore } from '#shared/predictions/store';
import type { PredictionRecord } from '#shared/predictions/record';
import type { ServingEnv } from '#shared/serving/clients';
import { EndpointRecords } from '#shared/serving/endpoint-record';
import { endpointKeyOf, endpointNameFor, type EndpointSettings, endpointSettings } from '#shared/serving/endpoints';
import { endpointFailure, isAlreadyExisting, isNotFound, refusal } from '#shared/serving/sagemaker-errors';
import { type EnsureResult, PredictionErrors } from '#shared/serving/steps';
import type { TemplateVariants } from '#shared/serving/template-variant';
import { StepError } from '#shared/steps';
import { setUpScaling } from './scaling.ts';

export interface EndpointDeps extends BaseDeps {
  sagemaker: SageMakerClient;
  autoscaling: ApplicationAutoScalingClient;
  cloudwatch: CloudWatchClient;
  serving: ServingEnv;
  /** Makes a template's SageMaker variant, for weights versions; absent where none can be made. */
  templateVariants?: TemplateVariants;
}

/** The one production variant of every endpoint. */
export const VARIANT = 'AllTraffic';
/** A prediction waits this long for its endpoint (creation, an instance from zero), then fails. */
export const READY_WITHIN_MINUTES = 60;

interface Target {
  name: string;
  image: string;
  /** What the endpoint serves: `dreambooth:version` (an image version's) or `dreambooth:template` (a digest). */
  tag: { Key: string; Value: string };
  settings: EndpointSettings;
}

export async function ensureEndpoint(d: EndpointDeps, predictionId: string, log: Logger): Promise<EnsureResult> {
  const predictions = new PredictionStore(d.store);
  const p = await predictions.get(predictionId);
  if (!p) throw new StepError(PredictionErrors.EndpointFailed, `prediction ${predictionId} does not exist`);
  const target = await targetOf(d, p);
  // While the template's image is being made (a build on AWS) there is no endpoint to look at yet.
  const result = 'waiting' in target ? target.waiting : await endpointState(d, target, p.version, log);
  const waited = (d.now().getTime() - Date.parse(p.created_at)) / 60_000;
  if (!result.ready && waited > READY_WITHIN_MINUTES) {
    throw new StepError(PredictionErrors.EndpointFailed, `the endpoint ${result.endpoint} was not ready after ${READY_WITHIN_MINUTES} minutes (${result.detail})`);
  }
  await say(predictions, p, result);
  return result;
}

async function endpointState(d: EndpointDeps, target: Target, version: string, log: Logger): Promise<EnsureResult> {
  const records = new EndpointRecords(d.store);
  const record = await records.touch(target.name, version, d.now());
  const described = await describe(d.sagemaker, target.name);
  return described ? whenExists(d, target, described, record.scaling_ready, log) : create(d, target, records);
}

async function targetOf(d: EndpointDeps, p: PredictionRecord): Promise<Target | { waiting: EnsureResult }> {
  const version = await d.store.getVersion(p.model, p.version);
  if (!version) throw new StepError(PredictionErrors.EndpointFailed, `version ${p.version} of ${p.model} no longer exists`);
  const name = endpointNameFor(d.serving.endpointPrefix, endpointKeyOf(version));
  const settings = endpointSettings(d.config, version.template.name);
  if (version.weights) {
    const { name: template, repository, digest } = version.template;
    if (!d.templateVariants) throw new StepError(PredictionErrors.EndpointFailed, `this deployment cannot make the SageMaker variant of the template ${repository}`);
    const variant = await d.templateVariants({ name: template, repository, digest }, name).catch((e: Error) => {
      throw new StepError(PredictionErrors.EndpointFailed, `the SageMaker variant of the template ${repository}@sha256:${digest} could not be made: ${e.message}`);
    });
    if ('waiting' in variant) return { waiting: { ready: false, endpoint: name, detail: variant.waiting } };
    return { name, image: variant.image, tag: { Key: 'dreambooth:template', Value: digest }, settings };
  }
  if (!version.serving_image) {
    throw new StepError(
      PredictionErrors.EndpointFailed,
      `version ${p.version} of ${p.model} was built before serving existed and has no SageMaker image: re-template its training (a new version from the same weights) and run the new version`,
    );
  }
  return { name, image: version.serving_image, tag: { Key: 'dreambooth:version', Value: version.id }, settings };
}

async function describe(sagemaker: SageMakerClient, name: string): Promise<DescribeEndpointCommandOutput | null> {
  try {
    return await sagemaker.send(new DescribeEndpointCommand({ EndpointName: name }));
  } catch (e) {
    if (isNotFound(e)) return null;
    throw refusal(e, { instanceType: '', image: '' });
  }
}

/** Model, endpoint configuration and endpoint, each skipped when a stopped step made it already. */
async function create(d: EndpointDeps, t: Target, records: EndpointRecords): Promise<EnsureResult> {
  const ctx = { instanceType: t.settings.instance_type, image: t.image };
  const tags = [t.tag];
  const once = async (call: () => Promise<unknown>) => {
    try {
      await call();
    } catch (e) {
      if (!isAlreadyExisting(e)) throw refusal(e, ctx);
    }
  };
  await records.setScalingReady(t.name, false);
  await once(() =>
    d.sagemaker.send(
      new CreateModelCommand({ ModelName: t.name, ExecutionRoleArn: d.serving.endpointRoleArn, PrimaryContainer: { Image: t.image }, Tags: tags }),
    ),
  );
  await once(() => d.sagemaker.send(new CreateEndpointConfigCommand(endpointConfig(d.serving, t))));
  await once(() => d.sagemaker.send(new CreateEndpointCommand({ EndpointName: t.name, EndpointConfigName: t.name, Tags: tags })));
  return { ready: false, endpoint: t.name, detail: `creating the endpoint ${t.name} (${t.settings.instance_type}): the first prediction of a version waits for an instance and its image, usually several minutes` };
}

/** Asynchronous inference: requests from S3, responses to the predictions prefix, both topics notified. */
export function endpointConfig(s: ServingEnv, t: Target) {
  return {
    EndpointConfigName: t.name,
    ProductionVariants: [{ VariantName: VARIANT, ModelName: t.name, InstanceType: t.settings.instance_type as never, InitialInstanceCount: 1 }],
    AsyncInferenceConfig: {
      ClientConfig: { MaxConcurrentInvocationsPerInstance: t.settings.max_concurrent_invocations_per_instance },
      OutputConfig: {
        // The response lands at `<S3OutputPath><inference id>.out`, the inference id being the prediction id.
        S3OutputPath: s.outputPath,
        S3FailurePath: s.outputPath,
        // The response stays in S3 only: record-prediction reads it there, and a picture has no business in SNS.
        NotificationConfig: { SuccessTopic: s.successTopicArn, ErrorTopic: s.errorTopicArn },
      },
    },
    Tags: [t.tag],
  };
}

async function whenExists(d: EndpointDeps, t: Target, e: DescribeEndpointCommandOutput, scalingReady: boolean, log: Logger): Promise<EnsureResult> {
  const ctx = { instanceType: t.settings.instance_type, image: t.image };
  const name = t.name;
  switch (e.EndpointStatus) {
    case 'Failed': {
      // A failed endpoint serves nothing: deleted, so that a later prediction makes it again.
      try {
        await d.sagemaker.send(new DeleteEndpointCommand({ EndpointName: name }));
      } catch (err) {
        log.warn('could not delete the failed endpoint', { endpoint: name, error: (err as Error).message });
      }
      throw endpointFailure(e.FailureReason ?? 'no reason given', ctx);
    }
    case 'InService':
      break;
    case 'Deleting':
      return { ready: false, endpoint: name, detail: `the endpoint ${name} is being deleted (idle): waiting to make it again` };
    default:
      return { ready: false, endpoint: name, detail: `the endpoint ${name} is ${String(e.EndpointStatus ?? 'starting').toLowerCase()}: waiting for it to be in service (minutes)` };
  }
  if (!scalingReady) {
    await setUpScaling(d, name, t.settings);
    await new EndpointRecords(d.store).setScalingReady(name, true);
  }
  const variant = e.ProductionVariants?.find((v) => v.VariantName === VARIANT) ?? e.ProductionVariants?.[0];
  if ((variant?.CurrentInstanceCount ?? 0) > 0) return { ready: true, endpoint: name, detail: `the endpoint ${name} is in service` };
  // At zero instances: ask for one and wait for it, rather than queue the request where the prediction could not tell.
  if ((variant?.DesiredInstanceCount ?? 0) === 0) {
    try {
      await d.sagemaker.send(
        new UpdateEndpointWeightsAndCapacitiesCommand({ EndpointName: name, DesiredWeightsAndCapacities: [{ VariantName: variant?.VariantName ?? VARIANT, DesiredInstanceCount: 1 }] }),
      );
    } catch (e) {
      // AWS documents no manual wake-up of an asynchronous endpoint at zero; its documented path is
      // the step policy on HasBacklogWithoutCapacity, which a queued request sets off.
      if ((e as Error).name !== 'ValidationException') throw e;
      return { ready: true, endpoint: name, detail: `the endpoint ${name} is at zero instances: the request waits in its queue until its scaling starts one (minutes)` };
    }
  }
  return { ready: false, endpoint: name, detail: `the endpoint ${name} has scaled to zero while idle: waiting for an instance to start (minutes)` };
}

/** The prediction's logs say what it waits for, once per change; it stays `starting`. */
async function say(predictions: PredictionStore, p: PredictionRecord, r: EnsureResult): Promise<void> {
  const line = `${r.ready ? '' : 'waiting: '}${r.detail}`;
  const lines = p.logs ? p.logs.split('\n') : [];
  const fields: Partial<PredictionRecord> = { endpoint: r.endpoint };
  if (lines.at(-1) !== line && !(r.ready && lines.length === 0)) fields.logs = [...lines, line].join('\n');
  await predictions.update(p.id, fields, ['starting']);
}
