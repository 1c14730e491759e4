/**
 * Replicate's HTTP API (api.replicate.com, or anything that speaks it) as the trainer.
 *
 * What shapes this code: Replicate assigns the prediction id and its create has no idempotency
 * key, so our run id is mapped to Replicate's id in our own table (see `PredictionLedger`);
 * webhooks are signed per Standard Webhooks with the account's secret; file outputs served
 * from the API's own origin need the API token to download.
 */
import { DeleteCommand, GetCommand, PutCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import * as z from '../zod.ts';
import { HttpError, request, type HttpResponse } from '../http.ts';
import { sha256Hex } from '../ids.ts';
import { verify } from '../webhook-signing.ts';
import {
  CallbackAuthError,
  TrainerFailedError,
  TransientError,
  type InboundRequest,
  type Run,
  type RunState,
  type TrainerBackend,
} from './types.ts';

export const REPLICATE_VERSION = /^[0-9a-f]{64}$/;

/**
 * Where a run's Replicate prediction id is kept. The start claims the run BEFORE it creates
 * the prediction and records the id AFTER: a retried start that finds the id resumes that
 * prediction, and one that finds a bare claim knows an earlier create may have succeeded
 * without its answer arriving. It then refuses to create another (that would train and bill
 * twice) and fails the run; failures that prove nothing was created give the claim back.
 */
export interface PredictionLedger {
  /** null: never claimed; `predictionId` null: claimed, id not (yet) known. */
  get(runId: string): Promise<{ predictionId: string | null } | null>;
  /** False when the run was claimed before. */
  claim(runId: string): Promise<boolean>;
  /** Only the claim's holder records, so this needs no condition. */
  record(runId: string, predictionId: string): Promise<void>;
  release(runId: string): Promise<void>;
}

const ledgerKey = (runId: string) => ({ pk: `REPLICATE#${runId}`, sk: 'REPLICATE' });
const conditionFailed = (e: unknown) => (e as Error).name === 'ConditionalCheckFailedException';

/** The ledger as one item per run in the service's table (conditional writes only). */
export class DynamoPredictionLedger implements PredictionLedger {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async get(runId: string) {
    const out = await this.db.send(new GetCommand({ TableName: this.table, Key: ledgerKey(runId), ConsistentRead: true }));
    if (!out.Item) return null;
    return { predictionId: typeof out.Item.prediction_id === 'string' ? out.Item.prediction_id : null };
  }

  async claim(runId: string): Promise<boolean> {
    const Item = { ...ledgerKey(runId), claimed_at: new Date().toISOString() };
    try {
      await this.db.send(new PutCommand({ TableName: this.table, Item, ConditionExpression: 'attribute_not_exists(pk)' }));
      return true;
    } catch (e) {
      if (conditionFailed(e)) return false;
      throw e;
    }
  }

  async record(runId: string, predictionId: string): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: ledgerKey(runId),
        UpdateExpression: 'SET prediction_id = :id',
        ExpressionAttributeValues: { ':id': predictionId },
      }),
    );
  }

  async release(runId: string): Promise<void> {
    await this.db
      .send(new DeleteCommand({ TableName: this.table, Key: ledgerKey(runId), ConditionExpression: 'attribute_not_exists(prediction_id)' }))
      .catch((e: unknown) => {
        if (!conditionFailed(e)) throw e;
      });
  }
}

export interface ReplicateOptions {
  apiUrl: string;
  token: string;
  /** CIDRs the API may live in although private (the egress guard's allow-list). */
  allow: string[];
  ledger: PredictionLedger;
  /** The version to run: the trainer's pinned one, or the one the training named. */
  versionOf: (run: Run) => Promise<string | null>;
  timeoutMs?: number;
}

const EVENTS = ['start', 'output', 'logs', 'completed'];
/** Answers after which a create may still have happened (a gateway gave up, not Replicate). */
const AMBIGUOUS = new Set([502, 504]);
const SECRET_TTL_MS = 5 * 60_000;
const signingSecrets = new Map<string, { key: string; at: number }>();

/** The API token for files on the API's own origin (never for another origin). */
export function replicateDownloadHeaders(apiUrl: string, token: string, url: string): Record<string, string> {
  return URL.canParse(url) && new URL(url).origin === new URL(apiUrl).origin ? { authorization: `Bearer ${token}` } : {};
}

export class ReplicateTrainer implements TrainerBackend {
  private readonly origin: string;

  constructor(private readonly opts: ReplicateOptions) {
    this.origin = new URL(opts.apiUrl).origin;
  }

  async start(run: Run): Promise<RunState> {
    const version = await this.opts.versionOf(run);
    if (!version || !REPLICATE_VERSION.test(version)) {
      throw new TrainerFailedError(
        'no Replicate version to run: pin trainer_version on the replicate trainer, or pass a 64-hex trainer_version',
      );
    }
    // Claimed before: a retried start, which resumes the recorded prediction.
    if (!(await this.opts.ledger.claim(run.runId))) return this.resume(run, (await this.opts.ledger.get(run.runId))?.predictionId ?? null);
    const prediction = await this.create(run, version);
    await this.opts.ledger.record(run.runId, prediction.id);
    return toRunState(prediction);
  }

  async check(run: Run): Promise<RunState | 'lost'> {
    const known = await this.opts.ledger.get(run.runId);
    // Without an id there is nothing to ask about.
    if (!known?.predictionId) return 'lost';
    return this.fetch(known.predictionId);
  }

  async cancel(runId: string): Promise<void> {
    const id = (await this.opts.ledger.get(runId))?.predictionId;
    if (!id) return;
    const res = await this.call('POST', `/v1/predictions/${encodeURIComponent(id)}/cancel`);
    // 404: gone or never ours to cancel, which is what cancel wants anyway.
    if (res.status >= 300 && res.status !== 404) throw failure('cancel', res);
  }

  /**
   * Any prediction signed by the account and sent to this training's callback URL is this
   * training's: the URL's secret is per training. So no run id is returned (Replicate's id is
   * not ours, and the callback route would ignore it as "another run").
   */
  async parseCallback(req: InboundRequest): Promise<RunState> {
    if (!verify(await this.signingSecret(), req.headers, req.body)) {
      throw new CallbackAuthError('the webhook signature is missing, wrong or more than 5 minutes old');
    }
    return toRunState(parsePrediction(JSON.parse(req.body)));
  }

  private async resume(run: Run, predictionId: string | null): Promise<RunState> {
    if (!predictionId) {
      throw new TrainerFailedError(
        `an earlier start of run ${run.runId} may have created a Replicate prediction whose id never came back; ` +
          'a second one would train (and bill) twice, so this training stops here: start a new one',
      );
    }
    const state = await this.fetch(predictionId);
    if (state === 'lost') throw new TrainerFailedError(`Replicate no longer knows prediction ${predictionId}`);
    return state;
  }

  private async create(run: Run, version: string): Promise<Prediction> {
    const body = { version, input: run.input, webhook: run.callbackUrl, webhook_events_filter: EVENTS };
    let res: HttpResponse;
    try {
      res = await this.send('POST', '/v1/predictions', body);
    } catch (e) {
      if (neverSent(e)) await this.opts.ledger.release(run.runId);
      throw unreachable(e);
    }
    if (res.status === 200 || res.status === 201) return parsePrediction(json(res));
    if (!AMBIGUOUS.has(res.status)) await this.opts.ledger.release(run.runId);
    throw failure('create', res);
  }

  private async fetch(id: string): Promise<RunState | 'lost'> {
    const res = await this.call('GET', `/v1/predictions/${encodeURIComponent(id)}`);
    if (res.status === 404) return 'lost';
    if (res.status !== 200) throw failure('status check', res);
    return toRunState(parsePrediction(json(res)));
  }

  /** The account's webhook signing secret, cached per container (it rarely changes). */
  private async signingSecret(): Promise<string> {
    const cacheKey = `${this.origin} ${sha256Hex(this.opts.token)}`;
    const hit = signingSecrets.get(cacheKey);
    if (hit && Date.now() - hit.at < SECRET_TTL_MS) return hit.key;
    const res = await this.call('GET', '/v1/webhooks/default/secret');
    if (res.status !== 200) throw failure('webhook secret request', res);
    const parsed = z.object({ key: z.string().check(z.startsWith('whsec_')) }).safeParse(json(res));
    if (!parsed.success) throw new TransientError('Replicate answered no whsec_ webhook signing secret');
    signingSecrets.set(cacheKey, { key: parsed.data.key, at: Date.now() });
    return parsed.data.key;
  }

  private async call(method: string, path: string, body?: unknown): Promise<HttpResponse> {
    try {
      return await this.send(method, path, body);
    } catch (e) {
      throw unreachable(e);
    }
  }

  private send(method: string, path: string, body?: unknown): Promise<HttpResponse> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.opts.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return request(this.opts.apiUrl.replace(/\/+$/, '') + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      timeoutMs: this.opts.timeoutMs ?? 30_000,
      allow: this.opts.allow,
      maxResponseBytes: 4 * 1024 * 1024,
    });
  }
}

/** True when the request surely never reached the server, so nothing was created. */
function neverSent(e: unknown): boolean {
  if (!(e instanceof HttpError)) return false;
  return e.code === 'EGRESS_REFUSED' || (e.code === 'NETWORK' && /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH/.test(e.message));
}

function unreachable(e: unknown): Error {
  const err = e as Error & { code?: string };
  if (err.code === 'EGRESS_REFUSED') return new TrainerFailedError(err.message);
  return new TransientError(`Replicate not reachable: ${err.message}`);
}

function failure(what: string, res: HttpResponse): Error {
  const detail = `Replicate answered the ${what} with HTTP ${res.status}: ${errorDetail(res)}`;
  if (res.status === 429 || res.status >= 500) return new TransientError(detail);
  if (res.status === 401 || res.status === 403) return new TrainerFailedError(`${detail} (check the API token secret)`);
  return new TrainerFailedError(detail);
}

function errorDetail(res: HttpResponse): string {
  const text = res.body.toString('utf8');
  try {
    const detail = (JSON.parse(text) as { detail?: unknown }).detail;
    return String(typeof detail === 'string' ? detail : JSON.stringify(detail ?? text)).slice(0, 500);
  } catch {
    return text.slice(0, 500);
  }
}

function json(res: HttpResponse): unknown {
  try {
    return JSON.parse(res.body.toString('utf8'));
  } catch {
    throw new TransientError(`Replicate answered HTTP ${res.status} with a body that is not JSON`);
  }
}

const PredictionSchema = z.object({
  id: z.string().check(z.minLength(1)),
  status: z.enum(['starting', 'processing', 'succeeded', 'failed', 'canceled', 'aborted']),
  output: z.optional(z.unknown()),
  logs: z.nullish(z.string()),
  error: z.optional(z.unknown()),
  metrics: z.nullish(z.object({ predict_time: z.optional(z.number()) })),
});
type Prediction = z.infer<typeof PredictionSchema>;

export function parsePrediction(raw: unknown): Prediction {
  const parsed = PredictionSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new TrainerFailedError(`not a Replicate prediction: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}

export function toRunState(p: Prediction): RunState {
  return {
    // Replicate stops a run it gave up on as `aborted`: for us, the trainer canceled it.
    status: p.status === 'aborted' ? 'canceled' : p.status,
    output: outputUrl(p.output),
    logs: p.logs ?? null,
    error: p.error == null ? null : typeof p.error === 'string' ? p.error : JSON.stringify(p.error),
    predict_time: p.metrics?.predict_time ?? null,
  };
}

/**
 * The output: a URL; or an object's `weights` URL (Replicate's trainers answer `{version, weights}`);
 * or among a list's or an object's URLs the first archive or weights file (`.zip`, `.tar`,
 * `.tar.gz`, `.tgz`, `.safetensors`), or the only URL.
 */
export function outputUrl(output: unknown): string | null {
  if (typeof output === 'string') return output;
  const weights = (output as { weights?: unknown } | null)?.weights;
  if (typeof weights === 'string' && URL.canParse(weights)) return weights;
  const values = Array.isArray(output) ? output : output && typeof output === 'object' ? Object.values(output) : [];
  const urls = values.filter((v): v is string => typeof v === 'string' && URL.canParse(v));
  return urls.find((u) => WEIGHTS_FILE.test(new URL(u).pathname)) ?? (urls.length === 1 ? urls[0]! : null);
}

const WEIGHTS_FILE = /\.(zip|tar|tar\.gz|tgz|safetensors)$/i;
