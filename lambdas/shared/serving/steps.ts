/**
 * Payloads of the prediction state machine's Task states (infra/constructs/serving.ts builds
 * them, the functions parse them), and the errors its steps raise.
 */
import * as z from '../zod.ts';

/** Execution names are at most 80 characters; the api names each execution after its prediction. */
export const PredictionId = z.string().check(z.regex(/^[A-Za-z0-9_-]{1,80}$/, 'is not a prediction id'));

/**
 * How long a request may wait in an endpoint's queue (asynchronous inference allows up to
 * 6 hours): a burst on an endpoint at its maximum instances drains in turn. The wait for the
 * answer outlasts it (infra/constructs/serving.ts).
 */
export const REQUEST_TTL_SECONDS = 6 * 3600;

/** The Catch's error output: { Error, Cause }. */
const CaughtError = z.looseObject({ Error: z.optional(z.string()), Cause: z.optional(z.string()) });

/** prediction-endpoint: "Make sure the endpoint is ready", and the daily sweep of idle endpoints. */
export const EndpointEvent = z.discriminatedUnion('action', [
  z.object({ action: z.literal('ensure'), prediction_id: PredictionId }),
  z.object({ action: z.literal('sweep') }),
]);
export type EndpointEvent = z.infer<typeof EndpointEvent>;

/** What "Make sure the endpoint is ready" answers (`$.endpoint`). */
export interface EnsureResult {
  ready: boolean;
  endpoint: string;
  /** What the prediction waits for, or what is ready. */
  detail: string;
}

/** predict (.waitForTaskToken): "Send the request and wait for the endpoint's answer". */
export const PredictEvent = z.object({
  prediction_id: PredictionId,
  task_token: z.string().check(z.minLength(1)),
  endpoint: z.string().check(z.minLength(1)),
});

/** What prediction-notified sends with SendTaskSuccess (`$.response`). */
export const PredictionResponse = z.object({ output_location: z.string() });
export type PredictionResponse = z.infer<typeof PredictionResponse>;

/** record-prediction: "Store the outputs" / "Record the failure". */
export const RecordPredictionEvent = z.discriminatedUnion('action', [
  z.object({ action: z.literal('outputs'), prediction_id: PredictionId, response: PredictionResponse }),
  z.object({ action: z.literal('failure'), prediction_id: PredictionId, error: CaughtError }),
]);
export type RecordPredictionEvent = z.infer<typeof RecordPredictionEvent>;

/** Error names of the prediction steps; the failure step reads their messages. */
export const PredictionErrors = {
  /** The version cannot be served (no serving image, image missing, endpoint failed). */
  EndpointFailed: 'EndpointFailed',
  /** A SageMaker quota refused the endpoint. */
  QuotaExceeded: 'QuotaExceeded',
  /** AWS had no capacity of the instance type. */
  NoCapacity: 'NoCapacity',
  /** SageMaker's error notification: the request failed on the endpoint. */
  InferenceFailed: 'InferenceFailed',
} as const;

/** The Cause prediction-notified gives SendTaskFailure: the reason and where SageMaker wrote the failure. */
export interface InferenceFailureCause {
  reason: string;
  failure_location?: string;
}
