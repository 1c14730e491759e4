/**
 * SageMaker Runtime's InvokeEndpointAsync in local mode, and what an instance does with one
 * request, as asynchronous inference does it: the input read from S3 as the model's execution
 * role, POSTed to the instance's `/invocations`, the answer written to
 * `<S3OutputPath><InferenceId>.out` (a failure to `<S3FailurePath><InferenceId>-error.out` when
 * the config has one), and the notification (lambdas/shared/serving/notification.ts) published
 * to the success or error topic — delivered to the functions the template subscribes to it.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { AsyncInferenceNotification } from '#shared/serving/notification';
import type { RestOperation } from '../endpoint.ts';
import { AwsError } from '../errors.ts';
import { LOCAL_REGION } from '../names.ts';
import type { AsyncRequest, LocalEndpoint } from './endpoints.ts';
import type { Instance } from './instances.ts';

/** SageMaker's defaults and limits (InvokeEndpointAsync's API reference). */
const DEFAULT_INVOCATION_TIMEOUT = 900;
const MAX_INVOCATION_TIMEOUT = 3600;
const DEFAULT_TTL = 6 * 3600;
const INFERENCE_ID = /^\S{1,64}$/;

/** What processing a request needs from local mode. */
export interface RuntimeContext {
  /** An S3 client signing as the role (the model's execution role). */
  s3AsRole(roleArn: string): S3Client;
  /** Publishes to a topic: the functions subscribed to it get the SNS event. */
  publish(topicArn: string, message: AsyncInferenceNotification): Promise<void>;
  log(line: string): void;
}

const header = (headers: Record<string, string | string[] | undefined>, name: string) => {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
};

/** `POST /endpoints/{EndpointName}/async-invocations`: validated, queued, answered at once (202). */
export function invokeEndpointAsync(endpointOf: (name: string) => LocalEndpoint | undefined): RestOperation {
  return async ([name], headers) => {
    const endpoint = endpointOf(name!);
    if (!endpoint) throw new AwsError('ValidationError', `Endpoint ${name} of account 000000000000 not found.`);
    if (endpoint.status !== 'InService') throw new AwsError('ValidationError', `Endpoint ${name} is not in service (status: ${endpoint.status}).`);
    const inputLocation = header(headers, 'X-Amzn-SageMaker-InputLocation') ?? '';
    if (!/^s3:\/\/[^/]+\/.+/.test(inputLocation)) throw new AwsError('ValidationError', `InputLocation must be an s3:// URI of an object, not '${inputLocation}'.`);
    const inferenceId = header(headers, 'X-Amzn-SageMaker-Inference-Id') ?? randomUUID();
    if (!INFERENCE_ID.test(inferenceId)) throw new AwsError('ValidationError', 'InferenceId must be 1-64 characters without whitespace.');
    const timeout = Number(header(headers, 'X-Amzn-SageMaker-InvocationTimeoutSeconds') ?? DEFAULT_INVOCATION_TIMEOUT);
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > MAX_INVOCATION_TIMEOUT) {
      throw new AwsError('ValidationError', `InvocationTimeoutSeconds must be an integer from 1 to ${MAX_INVOCATION_TIMEOUT}.`);
    }
    const output = endpoint.spec.async;
    const request: AsyncRequest = {
      inferenceId,
      inputLocation,
      contentType: header(headers, 'X-Amzn-SageMaker-Content-Type') ?? 'application/octet-stream',
      accept: header(headers, 'X-Amzn-SageMaker-Accept'),
      outputLocation: `${withSlash(output.S3OutputPath)}${inferenceId}.out`,
      failureLocation: output.S3FailurePath ? `${withSlash(output.S3FailurePath)}${inferenceId}-error.out` : undefined,
      invocationTimeoutSeconds: timeout,
      ttlSeconds: Number(header(headers, 'X-Amzn-SageMaker-RequestTTLSeconds') ?? DEFAULT_TTL),
      received: Date.now(),
    };
    endpoint.enqueue(request);
    const answer: Record<string, string> = { 'content-type': 'application/json', 'x-amzn-sagemaker-outputlocation': request.outputLocation };
    if (request.failureLocation) answer['x-amzn-sagemaker-failurelocation'] = request.failureLocation;
    return { status: 202, headers: answer, body: JSON.stringify({ InferenceId: inferenceId, OutputLocation: request.outputLocation }) };
  };
}

/**
 * One request on one instance; never throws (a failure is notified). Resolves once the model
 * has answered, which frees the instance's slot: the response is then written and the
 * notification sent on their own time, in that order, as SageMaker's side of an instance does
 * while the model takes its next request.
 */
export async function processRequest(ctx: RuntimeContext, endpoint: LocalEndpoint, instance: Instance | null, req: AsyncRequest, failure?: string): Promise<void> {
  const started = Date.now();
  let answer: Answer | { ok: false; reason: string };
  try {
    if (failure) throw new Error(failure);
    if (Date.now() - req.received > req.ttlSeconds * 1000) throw new Error('Request expired before it was processed (RequestTTLSeconds).');
    answer = await invoke(ctx, endpoint, instance!, req);
  } catch (e) {
    answer = { ok: false, reason: (e as Error).message };
  }
  void finish(ctx, endpoint, req, answer, started);
}

/** Writes the model's answer where the request said, then notifies. */
async function finish(ctx: RuntimeContext, endpoint: LocalEndpoint, req: AsyncRequest, answer: Answer | { ok: false; reason: string }, started: number): Promise<void> {
  let outcome: { ok: true; contentType: string } | { ok: false; reason: string };
  try {
    outcome = await written(ctx, endpoint, req, answer);
  } catch (e) {
    outcome = { ok: false, reason: (e as Error).message };
  }
  const config = endpoint.spec.async;
  const base = {
    awsRegion: LOCAL_REGION,
    eventTime: new Date().toISOString(),
    receivedTime: new Date(req.received).toISOString(),
    inferenceId: req.inferenceId,
    eventVersion: '1.0',
    eventSource: 'aws:sagemaker',
    eventName: 'InferenceResult',
    requestParameters: { contentType: req.contentType, endpointName: endpoint.spec.name, inputLocation: req.inputLocation },
  };
  const topic = outcome.ok ? config.NotificationConfig?.SuccessTopic : config.NotificationConfig?.ErrorTopic;
  const message: AsyncInferenceNotification = outcome.ok
    ? { ...base, invocationStatus: 'Completed', responseParameters: { contentType: outcome.contentType, outputLocation: req.outputLocation } }
    : { ...base, invocationStatus: 'Failed', failureReason: outcome.reason, responseParameters: { failureLocation: req.failureLocation } };
  ctx.log(`endpoint ${endpoint.spec.name}: ${req.inferenceId} ${outcome.ok ? 'completed' : `failed (${outcome.reason})`} in ${Date.now() - started} ms`);
  if (topic) await ctx.publish(topic, message).catch((e: Error) => ctx.log(`endpoint ${endpoint.spec.name}: notification of ${req.inferenceId} not delivered: ${e.message}`));
}

async function invoke(ctx: RuntimeContext, endpoint: LocalEndpoint, instance: Instance, req: AsyncRequest): Promise<Answer> {
  const s3 = ctx.s3AsRole(endpoint.spec.roleArn);
  const input = await read(s3, req.inputLocation).catch((e: Error) => {
    throw new Error(`ClientError: Failed to download the input from ${req.inputLocation}: ${e.message}`);
  });
  const timeout = AbortSignal.timeout(req.invocationTimeoutSeconds * 1000);
  let res: Response;
  try {
    res = await fetch(`${instance.url}/invocations`, {
      method: 'POST',
      headers: { 'content-type': req.contentType, ...(req.accept ? { accept: req.accept } : {}), 'X-Amzn-SageMaker-Inference-Id': req.inferenceId },
      body: input,
      signal: timeout,
    });
  } catch (e) {
    if (timeout.aborted) throw new Error(`ModelError: the request timed out after ${req.invocationTimeoutSeconds} seconds (InvocationTimeoutSeconds)`);
    throw new Error(`ModelError: the model container did not answer: ${(e as Error).message}`);
  }
  const body = Buffer.from(await res.arrayBuffer());
  return { ok: res.ok, status: res.status, body, contentType: res.headers.get('content-type') ?? 'application/octet-stream' };
}

/** The model's answer: its HTTP status and body. */
interface Answer {
  ok: boolean;
  status: number;
  body: Buffer;
  contentType: string;
}

/** The answer written to the output (or the failure) location, as the model's role. */
async function written(ctx: RuntimeContext, endpoint: LocalEndpoint, req: AsyncRequest, answer: Answer | { ok: false; reason: string }) {
  if (!('body' in answer)) return answer;
  const s3 = ctx.s3AsRole(endpoint.spec.roleArn);
  if (!answer.ok) {
    if (req.failureLocation) await write(s3, req.failureLocation, answer.body, answer.contentType);
    return { ok: false as const, reason: `ClientError: Received server error (${answer.status}) from model. See the SageMaker Endpoint logs in your account for more information.` };
  }
  await write(s3, req.outputLocation, answer.body, answer.contentType);
  return { ok: true as const, contentType: answer.contentType };
}

const withSlash = (uri: string) => (uri.endsWith('/') ? uri : `${uri}/`);

function s3Parts(uri: string): { Bucket: string; Key: string } {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!m) throw new Error(`not an s3:// object URI: ${uri}`);
  return { Bucket: m[1]!, Key: m[2]! };
}

async function read(s3: S3Client, uri: string): Promise<Buffer> {
  const out = await s3.send(new GetObjectCommand(s3Parts(uri)));
  const chunks: Buffer[] = [];
  for await (const c of out.Body as Readable) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function write(s3: S3Client, uri: string, body: Buffer, contentType: string): Promise<void> {
  await s3.send(new PutObjectCommand({ ...s3Parts(uri), Body: body, ContentType: contentType }));
}
