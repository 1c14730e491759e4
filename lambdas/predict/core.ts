/**
 * "Send the request and wait for the endpoint's answer" (.waitForTaskToken): the prediction
 * becomes `processing` with its task token stored first (SageMaker's notification may come
 * back before InvokeEndpointAsync returns), then the request goes to the endpoint's queue,
 * its body the request object the api wrote. prediction-notified ends the wait.
 *
 * A weights version's request gets its weights here, at invoke time: the request object with the
 * version's weights input set to a presigned GET of the weights (WEIGHTS_URL_SECONDS), written
 * beside it (invocationKey). The URL is in neither the prediction record nor a log line.
 *
 * Replicate's `start` webhook leaves from here, as an asynchronous invocation of notify: a
 * state for it would cost every prediction a transition (two with the Choice that skips it),
 * this costs none.
 */
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { InvokeEndpointAsyncCommand, type SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BaseDeps } from '#shared/deps';
import { invocationKey, type PredictionRecord, requestKey } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { StepError, StepErrors } from '#shared/steps';
import { PredictionErrors, REQUEST_TTL_SECONDS } from '#shared/serving/steps';

/** Sends the prediction's `start` webhook without waiting for the receiver. */
export type StartWebhook = (p: PredictionRecord) => Promise<void>;

/**
 * How long a weights URL lasts. The endpoint is in service when the request is sent (the step
 * before waits for it), so the request reaches the model within this unless the endpoint's queue
 * holds it longer; then the model fails to fetch the weights and says so.
 */
export const WEIGHTS_URL_SECONDS = 600;
/** Where weights versions' weights are; nothing else is signed for an endpoint. */
const WEIGHTS_PREFIX = 'weights/';

export interface PredictDeps extends BaseDeps {
  runtime: SageMakerRuntimeClient;
  s3: S3Client;
  /** Absent where no notify function is deployed. */
  startWebhook?: StartWebhook;
}

export interface PredictEventInput {
  prediction_id: string;
  task_token: string;
  endpoint: string;
}

export interface PredictResult {
  inference_id: string;
  status: 'sent' | 'not sent';
  /** What became of the `start` webhook: best effort, it never fails the prediction. */
  start_webhook?: string;
}

const TRANSIENT = new Set(['ThrottlingException', 'ServiceUnavailable', 'InternalFailure', 'InternalServerError']);

export async function predict(d: PredictDeps, ev: PredictEventInput): Promise<PredictResult> {
  const predictions = new PredictionStore(d.store);
  const now = d.now().toISOString();
  const p = await predictions.update(ev.prediction_id, { status: 'processing', started_at: now, task_token: ev.task_token, endpoint: ev.endpoint }, ['starting', 'processing']);
  // Canceled meanwhile: the api stopped the execution, nothing to send.
  if (!p) return { inference_id: ev.prediction_id, status: 'not sent' };
  const request = await requestWithWeights(d, p);
  try {
    await d.runtime.send(
      new InvokeEndpointAsyncCommand({
        EndpointName: ev.endpoint,
        InputLocation: `s3://${d.bucket}/${request}`,
        InferenceId: ev.prediction_id,
        ContentType: 'application/json',
        InvocationTimeoutSeconds: d.config.serving.invocation_timeout_seconds,
        RequestTTLSeconds: REQUEST_TTL_SECONDS,
      }),
    );
  } catch (e) {
    const err = e as Error;
    // Retried by the state machine with a new task token, which replaces this one on the record.
    if (TRANSIENT.has(err.name)) throw new StepError(StepErrors.Transient, `SageMaker: ${err.message}`);
    throw new StepError(PredictionErrors.InferenceFailed, `SageMaker refused the request on ${ev.endpoint}: ${err.message}`);
  }
  return { inference_id: ev.prediction_id, status: 'sent', ...(await sendStart(d, p)) };
}

/** The key of the request the endpoint reads: the api's, or for a weights version the one with its weights URL. */
async function requestWithWeights(d: PredictDeps, p: PredictionRecord): Promise<string> {
  // The endpoint step found the version; one deleted since serves its request as it is.
  const v = await d.store.getVersion(p.model, p.version);
  if (!v?.weights) return requestKey(p.id);
  const { key, input } = v.weights;
  if (!key.startsWith(WEIGHTS_PREFIX)) throw new StepError(PredictionErrors.InferenceFailed, `version ${v.id} of ${v.model} names weights outside ${WEIGHTS_PREFIX}`);
  const got = await d.s3.send(new GetObjectCommand({ Bucket: d.bucket, Key: requestKey(p.id) }));
  const body = JSON.parse(await got.Body!.transformToString()) as { input: Record<string, unknown>; id: string };
  const url = await getSignedUrl(d.s3, new GetObjectCommand({ Bucket: d.bucket, Key: key }), { expiresIn: WEIGHTS_URL_SECONDS });
  const request = JSON.stringify({ ...body, input: { ...body.input, [input]: url } });
  await d.s3.send(new PutObjectCommand({ Bucket: d.bucket, Key: invocationKey(p.id), Body: request, ContentType: 'application/json' }));
  return invocationKey(p.id);
}

/** `start` once the request is queued, when the prediction's webhook_events_filter asks for it. */
async function sendStart(d: PredictDeps, p: PredictionRecord): Promise<Pick<PredictResult, 'start_webhook'>> {
  if (!p.webhook || !p.webhook_events_filter.includes('start')) return {};
  if (!d.startWebhook) return { start_webhook: 'no notify function' };
  try {
    await d.startWebhook(p);
    return { start_webhook: 'sent' };
  } catch (e) {
    return { start_webhook: `not sent: ${(e as Error).name}: ${(e as Error).message}` };
  }
}

/** The `start` webhook as an `Event` invocation of notify (retried by Lambda, not by this step). */
export function lambdaStartWebhook(lambda: LambdaClient, notifyFunction: string): StartWebhook {
  return async (p) => {
    await lambda.send(new InvokeCommand({ FunctionName: notifyFunction, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify({ prediction_id: p.id, event: 'start' })) }));
  };
}
