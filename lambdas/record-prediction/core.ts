/**
 * The prediction's bookkeeping steps: "Store the outputs" (the endpoint's response, Cog's
 * prediction, read from S3: its files to S3 objects, its status, logs and predict_time to the
 * record) and "Record the failure" (the step's error as the error a user reads). Both write
 * only while the prediction has not ended (a canceled one stays canceled).
 */
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { BaseDeps } from '#shared/deps';
import { PREDICTIONS_PREFIX, type PredictionRecord, type PredictionStatus } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { boundedError, logTail } from '#shared/run-logs';
import { type InferenceFailureCause, PredictionErrors } from '#shared/serving/steps';
import { StepError } from '#shared/steps';
import { storeFiles } from './files.ts';

export interface RecordPredictionDeps extends BaseDeps {
  s3: S3Client;
}

const OPEN: PredictionStatus[] = ['starting', 'processing'];

/** Cog's prediction response, as the adapter answers it. */
interface CogResponse {
  status?: string;
  output?: unknown;
  error?: string | null;
  logs?: string | null;
  metrics?: { predict_time?: number };
}

export async function storeOutputs(d: RecordPredictionDeps, id: string, outputLocation: string): Promise<{ status: PredictionStatus }> {
  const predictions = new PredictionStore(d.store);
  const p = await mustGet(predictions, id);
  if (!OPEN.includes(p.status)) return { status: p.status };
  const response = JSON.parse(await readPredictionObject(d, outputLocation)) as CogResponse;
  const logs = joinLogs(p.logs, response.logs);
  const now = d.now().toISOString();
  const predict_time = typeof response.metrics?.predict_time === 'number' ? response.metrics.predict_time : null;
  if (response.status !== 'succeeded') {
    const error = response.error || `the model's prediction ended ${response.status ?? 'without a status'}`;
    const updated = await predictions.update(id, { status: 'failed', error: boundedError(error), logs, predict_time, completed_at: now, task_token: null }, OPEN);
    return { status: updated?.status ?? p.status };
  }
  const output = await storeFiles(d.s3, d.bucket, id, response.output ?? null);
  const updated = await predictions.update(id, { status: 'succeeded', output, logs, predict_time, completed_at: now, task_token: null }, OPEN);
  return { status: updated?.status ?? p.status };
}

export async function recordFailure(d: RecordPredictionDeps, id: string, error: { Error?: string; Cause?: string }): Promise<{ status: PredictionStatus }> {
  const predictions = new PredictionStore(d.store);
  const p = await mustGet(predictions, id);
  const message = await failureMessage(d, error);
  const updated = await predictions.update(id, { status: 'failed', error: boundedError(message), completed_at: d.now().toISOString(), task_token: null }, OPEN);
  return { status: updated?.status ?? p.status };
}

/** A readable error from a Catch output: a step's own message, the endpoint's failure, a timeout. */
export async function failureMessage(d: RecordPredictionDeps, error: { Error?: string; Cause?: string }): Promise<string> {
  const name = error.Error ?? 'Error';
  const cause = parse(error.Cause);
  if (name === PredictionErrors.InferenceFailed && typeof cause?.reason === 'string') return inferenceFailure(d, cause as unknown as InferenceFailureCause);
  if (cause && typeof cause.errorMessage === 'string') return cause.errorMessage;
  if (name === 'States.Timeout') {
    return `the prediction did not finish in time: the endpoint never answered within serving.invocation_timeout_seconds (${d.config.serving.invocation_timeout_seconds} s) and the time a request may wait in its queue`;
  }
  return error.Cause ? `${name}: ${error.Cause}` : name;
}

/** SageMaker's failure reason, the time limit named, and what the model's server answered, if it wrote it. */
async function inferenceFailure(d: RecordPredictionDeps, cause: InferenceFailureCause): Promise<string> {
  const limit = d.config.serving.invocation_timeout_seconds;
  const reason = /timeout|timed out/i.test(cause.reason)
    ? `the prediction took longer than its time limit of ${limit} s (serving.invocation_timeout_seconds): ${cause.reason}`
    : /expired|ttl/i.test(cause.reason)
      ? `the request waited in the endpoint's queue past its time to live and was dropped: ${cause.reason}`
      : `the prediction failed on the endpoint: ${cause.reason}`;
  if (!cause.failure_location) return reason;
  const body = await readPredictionObject(d, cause.failure_location).catch(() => '');
  return body.trim() ? `${reason}\n${body.trim().slice(0, 2000)}` : reason;
}

/** Reads an endpoint's response, only from this bucket's predictions prefix. */
async function readPredictionObject(d: RecordPredictionDeps, location: string): Promise<string> {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(location);
  if (!m || m[1] !== d.bucket || !m[2]!.startsWith(PREDICTIONS_PREFIX)) throw new StepError(PredictionErrors.InferenceFailed, `the endpoint's response is not under s3://${d.bucket}/${PREDICTIONS_PREFIX}: ${location}`);
  const out = await d.s3.send(new GetObjectCommand({ Bucket: m[1], Key: m[2] }));
  return out.Body!.transformToString('utf8');
}

async function mustGet(predictions: PredictionStore, id: string): Promise<PredictionRecord> {
  const p = await predictions.get(id);
  if (!p) throw new StepError(PredictionErrors.EndpointFailed, `prediction ${id} does not exist`);
  return p;
}

/** The service's lines and the model's, cut to their tail as a training's logs are (the item ends at 400 KB). */
function joinLogs(own: string, model: string | null | undefined): string {
  return logTail([own, model ?? ''].filter((s) => s.trim()).join('\n'));
}

function parse(s: string | undefined): Record<string, unknown> | null {
  try {
    const v = s ? JSON.parse(s) : null;
    return v && typeof v === 'object' ? v : null;
  } catch {
    return null;
  }
}
