/**
 * Replicate's predictions API, create: `POST /v1/predictions` and
 * `POST /v1/models/{owner}/{name}/predictions`. A prediction is an execution of the prediction
 * state machine (infra/constructs/serving.ts): the api validates, writes the record (`starting`)
 * and the request object the endpoint reads, and starts the execution named by the id; the
 * steps do the rest. Reads and cancel: ./prediction-reads.ts.
 */
import { StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ApiError, badRequest, notFound, zodDetail } from '#shared/errors';
import { newTrainingId } from '#shared/ids';
import { type PredictionRecord, requestKey } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { fillPath } from '#shared/routes';
import type { VersionRecord } from '#shared/store';
import type { WebhookEvent } from '#shared/training';
import { claimOnce } from './idempotency.ts';
import { checkFileInputs, checkPredictionInput, refuseWeightsInput, shortenedInput } from './prediction-inputs.ts';
import { predictionBody } from './prediction-reads.ts';
import { waitForTerminal, waitSeconds } from './prediction-wait.ts';
import { canUse, checkEgress, parseObject } from './requests.ts';
import { EVENTS, predictionRequestSchema } from './schemas.ts';
import type { ApiDeps, ApiRequest, ApiResponse } from './types.ts';

const VERSION_ID = /^[0-9a-f]{64}$/;
const MODEL_VERSION = /^([^/\s]+)\/([^/:\s]+):([0-9a-f]{64})$/;

export async function createPrediction(d: ApiDeps, req: ApiRequest): Promise<ApiResponse> {
  const body = parseBody(d, req, true);
  const version = await resolveVersion(d, req, body.version!);
  return create(d, req, version, body);
}

/** Replicate's model route: the model's latest version. */
export async function createModelPrediction(d: ApiDeps, req: ApiRequest, owner: string, name: string): Promise<ApiResponse> {
  const body = parseBody(d, req, false);
  const model = `${owner}/${name}`;
  const latest = canUse(req.owners, owner) ? (await d.store.listVersions(model, 1)).results[0] : undefined;
  // A model exists once it has a version; another owner's is not for this token to learn of.
  if (!latest) throw notFound(`model ${model} not found (a model exists once a training has pushed a version to it)`);
  return create(d, req, latest, body);
}

type Body = ReturnType<typeof parseBody>;

function parseBody(d: ApiDeps, req: ApiRequest, withVersion: boolean) {
  const parsed = predictionRequestSchema(withVersion).safeParse(parseObject(d, req.body));
  if (!parsed.success) throw badRequest(zodDetail(parsed.error));
  const body = parsed.data as { version?: string; input: Record<string, unknown>; webhook?: string | null; webhook_events_filter?: WebhookEvent[] };
  checkEgress(d, 'webhook', body.webhook);
  return body;
}

/** `version`: a version id (found through its alias) or `owner/name:version`; 404 when this token may not run it. */
export async function resolveVersion(d: ApiDeps, req: ApiRequest, ref: string): Promise<VersionRecord> {
  const pinned = MODEL_VERSION.exec(ref);
  if (pinned) {
    const [, owner, name, id] = pinned as unknown as [string, string, string, string];
    const v = canUse(req.owners, owner) ? await d.store.getVersion(`${owner}/${name}`, id) : null;
    if (!v) throw notFound(`version: no version ${id} of ${owner}/${name} for this token`);
    return v;
  }
  if (!VERSION_ID.test(ref)) throw badRequest('version: must be a version id (64 hex) or owner/name:version');
  const v = await d.store.findVersion(ref);
  if (!v || !canUse(req.owners, v.model.split('/')[0]!)) {
    // Versions pushed before bare ids were indexed are found by their model only.
    throw notFound(`version: no version ${ref} for this token (a version pushed before predictions existed is found as owner/name:${ref})`);
  }
  return v;
}

async function create(d: ApiDeps, req: ApiRequest, v: VersionRecord, body: Body): Promise<ApiResponse> {
  if (!d.predictions.stateMachineArn) throw new ApiError(503, 'predictions are not part of this deployment: deploy a stack with serving');
  refuseWeightsInput(v, body.input);
  checkFileInputs(d, body.input);
  await checkPredictionInput(d, v, body.input);
  const now = d.now();
  const p: PredictionRecord = {
    id: newTrainingId(),
    owner: v.model.split('/')[0]!,
    model: v.model,
    version: v.id,
    input: shortenedInput(body.input),
    status: 'starting',
    created_at: now.toISOString(),
    started_at: null,
    completed_at: null,
    error: null,
    logs: '',
    output: null,
    predict_time: null,
    webhook: body.webhook ?? null,
    webhook_events_filter: body.webhook_events_filter ?? [...EVENTS],
    endpoint: null,
    cancel_requested: false,
    task_token: null,
    webhook_outcome: null,
    // DynamoDB's TTL deletes the record with the bucket's prediction objects (retention.prediction_days).
    expiration: Math.floor(now.getTime() / 1000) + d.config.retention.prediction_days * 86_400,
  };
  const idempotent = { key: req.idempotencyKey, owners: req.owners, path: fillPath(req.resource, req.params), body: req.body };
  const predictions = new PredictionStore(d.store);
  const kind = { prefix: 'create-prediction', field: 'prediction_id', load: (id: string) => predictions.get(id) };
  const stored = await claimOnce(idempotent, kind, d.store, async () => {
    await predictions.create(p);
    await start(d, p, body.input);
    d.log.info('prediction created', { prediction_id: p.id, model: p.model, version: p.version });
    return p;
  });
  const seconds = waitSeconds(req.prefer);
  const answered = seconds > 0 ? await waitForTerminal(d.store, stored, seconds) : stored;
  return { status: 201, body: await predictionBody(d, answered) };
}

/** The request object the endpoint reads (`{input, id}`, the adapter's body), then the execution. */
async function start(d: ApiDeps, p: PredictionRecord, input: Record<string, unknown>): Promise<void> {
  try {
    const s3 = await d.predictions.s3();
    // Loaded here, not at the top: the api's other routes start without the S3 SDK.
    const { PutObjectCommand } = await import('#shared/s3-sdk');
    const request = JSON.stringify({ input, id: p.id });
    await s3.send(new PutObjectCommand({ Bucket: d.bucket, Key: requestKey(p.id), Body: request, ContentType: 'application/json' }));
    const execution = { stateMachineArn: d.predictions.stateMachineArn, name: p.id, input: JSON.stringify({ prediction_id: p.id }) };
    await d.sfn.send(new StartExecutionCommand(execution));
  } catch (e) {
    // Nothing lost: the prediction says why it never ran.
    await new PredictionStore(d.store).update(p.id, { status: 'failed', error: 'the prediction could not be started', completed_at: d.now().toISOString() });
    d.log.error('prediction start failed', { prediction_id: p.id, error: (e as Error).name });
    throw new ApiError(503, 'the prediction could not be started; try again');
  }
}
