/**
 * Replicate's HTTP API (api.replicate.com, or anything that speaks it) as the trainer.
 *
 * What shapes this code: Replicate assigns the prediction id and its create has no idempotency
 * key, so our run id is mapped to Replicate's id in our own table (see ledger.ts);
 * webhooks are signed per Standard Webhooks with the account's secret; file outputs served
 * from the API's own origin need the API token to download.
 */
import { HttpError, request, type HttpResponse } from '../../http.ts';
import { sha256Hex } from '../../ids.ts';
import * as z from '../../zod.ts';
import { verify } from '../../webhook-signing.ts';
import { CallbackAuthError, TrainerFailedError, TransientError, type InboundRequest, type Run, type RunState, type TrainerBackend } from '../types.ts';
import type { PredictionLedger } from './ledger.ts';
import { parsePrediction, toRunState, type Prediction } from './prediction.ts';

/** A Replicate version id. */
export const REPLICATE_VERSION = /^[0-9a-f]{64}$/;

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
