/**
 * The prediction record (one DynamoDB item) and its public view, Replicate's prediction object.
 * A file output is never inline in the record: it is an S3 object under the prediction's prefix,
 * written as `{ "$file": key }` in `output`, and shown as a short-lived URL the caller signs.
 */
import type { WebhookEvent } from '../training.ts';

export const PREDICTION_STATUSES = ['starting', 'processing', 'succeeded', 'failed', 'canceled'] as const;
export type PredictionStatus = (typeof PREDICTION_STATUSES)[number];
export const PREDICTION_TERMINAL: ReadonlySet<PredictionStatus> = new Set(['succeeded', 'failed', 'canceled']);
export const isPredictionTerminal = (s: PredictionStatus): boolean => PREDICTION_TERMINAL.has(s);

/** Key prefix of everything of one prediction in the data bucket: its request, its response, its files. */
export const PREDICTIONS_PREFIX = 'predictions/';
export const predictionPrefix = (id: string) => `${PREDICTIONS_PREFIX}${id}/`;
/** The request SageMaker reads (`InputLocation`): `{ "input": …, "id": … }`, the adapter's body. */
export const requestKey = (id: string) => `${predictionPrefix(id)}request.json`;
/**
 * A weights version's request as the endpoint reads it: the request plus the weights' presigned
 * URL, written at invoke time (lambdas/predict). Named `request.json` too, so the endpoint role's
 * one grant (every `request.json` under the predictions prefix) covers it.
 */
export const invocationKey = (id: string) => `${predictionPrefix(id)}invocation/request.json`;
/** Where the endpoint writes its response (`S3OutputPath` + the inference id SageMaker names it by). */
export const responsePrefix = (id: string) => `${predictionPrefix(id)}response/`;
/** A file output, by its position in the output. */
export const fileKey = (id: string, n: number, ext: string) => `${predictionPrefix(id)}files/${n}${ext}`;

/** A file output in the record: its S3 key. */
export interface FileRef {
  $file: string;
}

export interface PredictionRecord {
  id: string;
  owner: string;
  /** `owner/name`. */
  model: string;
  /** The version id (64 hex). */
  version: string;
  /** As submitted, long data URIs shortened (the whole request is in S3 at requestKey). */
  input: Record<string, unknown>;
  status: PredictionStatus;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  error: string | null;
  logs: string;
  /** The model's output, each file output a FileRef. */
  output: unknown;
  /** Seconds the model itself took (Cog's metrics.predict_time). */
  predict_time: number | null;
  webhook: string | null;
  webhook_events_filter: WebhookEvent[];
  /** The endpoint that serves the version. */
  endpoint: string | null;
  cancel_requested: boolean;
  /** Token of the Step Functions task waiting on SageMaker's notification (never shown, never logged). */
  task_token?: string | null;
  webhook_outcome: { delivered: boolean; attempts: number; last_status: number | null; detail: string } | null;
  /** Epoch seconds at which DynamoDB's TTL deletes the record (retention.prediction_days). */
  expiration: number;
}

/** Every FileRef of an output, in order (a file, a list of files, or files in an object). */
export function fileRefsOf(output: unknown): string[] {
  if (isFileRef(output)) return [output.$file];
  if (Array.isArray(output)) return output.flatMap(fileRefsOf);
  if (output && typeof output === 'object') return Object.values(output).flatMap(fileRefsOf);
  return [];
}

export function isFileRef(v: unknown): v is FileRef {
  return !!v && typeof v === 'object' && typeof (v as FileRef).$file === 'string' && Object.keys(v).length === 1;
}

/** The output with each FileRef replaced by its URL (`urls` by key; a missing one is null). */
export function withFileUrls(output: unknown, urls: ReadonlyMap<string, string>): unknown {
  if (isFileRef(output)) return urls.get(output.$file) ?? null;
  if (Array.isArray(output)) return output.map((o) => withFileUrls(o, urls));
  if (output && typeof output === 'object') return Object.fromEntries(Object.entries(output).map(([k, v]) => [k, withFileUrls(v, urls)]));
  return output;
}

/**
 * Replicate's prediction object; `baseUrl` is the public API base (no trailing slash), `fileUrls`
 * the short-lived URL of each file output by key (see fileRefsOf).
 */
export function predictionView(p: PredictionRecord, baseUrl: string, fileUrls: ReadonlyMap<string, string> = new Map()) {
  const url = `${baseUrl}/v1/predictions/${p.id}`;
  return {
    id: p.id,
    model: p.model,
    version: p.version,
    input: p.input,
    output: p.status === 'succeeded' ? withFileUrls(p.output, fileUrls) : null,
    logs: p.logs,
    error: p.error,
    status: p.status,
    source: 'api' as const,
    data_removed: false,
    created_at: p.created_at,
    started_at: p.started_at,
    completed_at: p.completed_at,
    urls: { get: url, cancel: `${url}/cancel`, web: url },
    metrics: p.predict_time === null ? {} : { predict_time: p.predict_time },
    webhook: p.webhook,
    webhook_events_filter: p.webhook_events_filter,
  };
}
