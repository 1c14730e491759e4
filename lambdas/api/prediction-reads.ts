/**
 * Replicate's predictions API, reads and cancel: `GET /v1/predictions/{id}`, `GET /v1/predictions`,
 * `POST /v1/predictions/{id}/cancel`. A file output is an S3 object under the prediction's
 * prefix, shown as a presigned GET signed here (#shared/predictions/urls; never logged).
 */
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { StopExecutionCommand } from '@aws-sdk/client-sfn';
import { badRequest, notFound } from '#shared/errors';
import { TRAINING_ID } from '#shared/ids';
import { isPredictionTerminal, type PredictionRecord } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { signedPredictionView } from '#shared/predictions/urls';
import { canUse } from './requests.ts';
import type { ApiDeps, ApiRequest, ApiResponse } from './types.ts';

export async function ownedPrediction(d: ApiDeps, req: ApiRequest, id: string): Promise<PredictionRecord> {
  const p = TRAINING_ID.test(id) ? await new PredictionStore(d.store).get(id) : null;
  // 404 rather than 403 for another owner's prediction, so ids don't leak.
  if (!p || !canUse(req.owners, p.owner)) throw notFound(`prediction ${id} not found`);
  return p;
}

/** Replicate's prediction object, each file output a fresh presigned URL. */
export const predictionBody = (d: ApiDeps, p: PredictionRecord) => signedPredictionView(p, d.publicUrl, d.bucket, d.predictions.s3);

export async function getPrediction(d: ApiDeps, req: ApiRequest, id: string): Promise<ApiResponse> {
  return { status: 200, body: await predictionBody(d, await ownedPrediction(d, req, id)) };
}

export async function listPredictions(d: ApiDeps, req: ApiRequest): Promise<ApiResponse> {
  let page;
  try {
    page = await new PredictionStore(d.store).list(req.owners, d.config.limits.page_size, req.query.cursor);
  } catch (e) {
    if ((e as Error).name === 'BadCursorError') throw badRequest((e as Error).message);
    throw e;
  }
  const results = await Promise.all(page.results.map((p) => predictionBody(d, p)));
  const url = (c: string | null) => (c ? `${d.publicUrl}/v1/predictions?cursor=${encodeURIComponent(c)}` : null);
  return { status: 200, body: { previous: url(page.previous), next: url(page.next), results } };
}

/**
 * Stops the execution, marks the prediction `canceled` (only while it is not terminal: a
 * prediction that finished meanwhile keeps its outcome) and sends its webhook: a stopped
 * execution runs no step after it.
 */
export async function cancelPrediction(d: ApiDeps, req: ApiRequest, id: string): Promise<ApiResponse> {
  const p = await ownedPrediction(d, req, id);
  if (isPredictionTerminal(p.status)) return { status: 200, body: await predictionBody(d, p) };
  const predictions = new PredictionStore(d.store);
  const fields = { status: 'canceled' as const, cancel_requested: true, completed_at: d.now().toISOString(), task_token: null };
  const updated = await predictions.update(p.id, fields, ['starting', 'processing']);
  if (!updated) return { status: 200, body: await predictionBody(d, (await predictions.get(p.id))!) };
  const executionArn = `${d.predictions.stateMachineArn.replace(':stateMachine:', ':execution:')}:${p.id}`;
  try {
    await d.sfn.send(new StopExecutionCommand({ executionArn, error: 'PredictionCanceled', cause: 'canceled through the API' }));
  } catch (e) {
    if ((e as Error).name !== 'ExecutionDoesNotExist') throw e;
  }
  await d.lambda.send(
    new InvokeCommand({
      FunctionName: d.notifyFunction,
      InvocationType: 'Event',
      Payload: Buffer.from(JSON.stringify({ prediction_id: p.id, event: 'completed' })),
    }),
  );
  d.log.info('prediction canceled', { prediction_id: p.id });
  return { status: 200, body: await predictionBody(d, updated) };
}
