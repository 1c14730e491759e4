/**
 * "Send the request and wait for the endpoint's answer" (.waitForTaskToken): the prediction
 * becomes `processing` with its task token stored first (SageMaker's notification may come
 * back before InvokeEndpointAsync returns), then the request goes to the endpoint's queue,
 * its body the request object the api wrote. prediction-notified ends the wait.
 */
import { InvokeEndpointAsyncCommand, type SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import type { BaseDeps } from '#shared/deps';
import { requestKey } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { StepError, StepErrors } from '#shared/steps';
import { PredictionErrors, REQUEST_TTL_SECONDS } from '#shared/serving/steps';

export interface PredictDeps extends BaseDeps {
  runtime: SageMakerRuntimeClient;
}

export interface PredictEventInput {
  prediction_id: string;
  task_token: string;
  endpoint: string;
}

export async function predict(d: PredictDeps, ev: PredictEventInput): Promise<{ inference_id: string; status: string }> {
  const predictions = new PredictionStore(d.store);
  const now = d.now().toISOString();
  const p = await predictions.update(ev.prediction_id, { status: 'processing', started_at: now, task_token: ev.task_token, endpoint: ev.endpoint }, ['starting', 'processing']);
  // Canceled meanwhile: the api stopped the execution, nothing to send.
  if (!p) return { inference_id: ev.prediction_id, status: 'not sent' };
  try {
    await d.runtime.send(
      new InvokeEndpointAsyncCommand({
        EndpointName: ev.endpoint,
        InputLocation: `s3://${d.bucket}/${requestKey(ev.prediction_id)}`,
        InferenceId: ev.prediction_id,
        ContentType: 'application/json',
        InvocationTimeoutSeconds: d.config.serving.invocation_timeout_seconds,
        RequestTTLSeconds: REQUEST_TTL_SECONDS,
      }),
    );
  } catch (e) {
    const err = e as Error;
    if (err.name === 'ThrottlingException' || err.name === 'ServiceUnavailable' || err.name === 'InternalFailure') throw new StepError(StepErrors.Transient, `SageMaker: ${err.message}`);
    throw new StepError(PredictionErrors.InferenceFailed, `SageMaker refused the request on ${ev.endpoint}: ${err.message}`);
  }
  return { inference_id: ev.prediction_id, status: 'sent' };
}
