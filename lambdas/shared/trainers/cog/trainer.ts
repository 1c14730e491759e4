/**
 * A Cog (>= 0.7) prediction server as the trainer. What shapes this code (observed on Cog 0.9):
 * there is no GET of a prediction; a PUT of the same id while it runs answers its state, but a
 * PUT of an id that has finished starts a NEW run; 409 means busy with another id; webhooks
 * are unsigned (optional `Authorization: Bearer $WEBHOOK_AUTH_TOKEN`), can arrive out of order,
 * and each `logs` event carries the whole log so far.
 */
import { request } from '../../http.ts';
import { safeEqual } from '../../ids.ts';
import {
  CallbackAuthError,
  TrainerBusyError,
  TrainerFailedError,
  TransientError,
  type InboundRequest,
  type Run,
  type RunState,
  type RunStatus,
  type TrainerBackend,
} from '../types.ts';

export interface CogOptions {
  url: string;
  /** CIDRs the trainer may live in although private (the egress guard's allow-list). */
  allow: string[];
  /** Cog's WEBHOOK_AUTH_TOKEN, when the server sets one. */
  authToken?: string;
  timeoutMs?: number;
}

const STATUSES = new Set<RunStatus>(['starting', 'processing', 'succeeded', 'failed', 'canceled']);

export class CogTrainer implements TrainerBackend {
  constructor(private readonly opts: CogOptions) {}

  async start(run: Run): Promise<RunState> {
    const health = await this.health();
    if (health === 'STARTING') throw new TransientError('the Cog trainer is still starting up');
    if (health === 'SETUP_FAILED' || health === 'DEFUNCT') {
      throw new TrainerFailedError(`the Cog trainer cannot run predictions (health-check: ${health})`);
    }
    return this.put(run);
  }

  async check(run: Run): Promise<RunState | 'lost'> {
    const health = await this.health();
    // Idle or restarted: our run is over and its terminal webhook never reached us.
    if (health !== 'BUSY') return 'lost';
    try {
      return await this.put(run);
    } catch (e) {
      if (e instanceof TrainerBusyError) return 'lost'; // busy with another run
      throw e;
    }
  }

  async cancel(runId: string): Promise<void> {
    const res = await this.call('POST', `/predictions/${encodeURIComponent(runId)}/cancel`);
    // 404: unknown or already finished, which is what cancel wants anyway.
    if (res.status >= 500) throw new TransientError(`Cog cancel answered ${res.status}`);
  }

  async parseCallback(req: InboundRequest): Promise<RunState & { runId?: string }> {
    if (this.opts.authToken) {
      const given = (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '');
      if (!safeEqual(given, this.opts.authToken)) throw new CallbackAuthError('bad or missing bearer token');
    }
    return parsePrediction(JSON.parse(req.body));
  }

  private async health(): Promise<string> {
    const res = await this.call('GET', '/health-check');
    if (res.status !== 200) throw new TransientError(`Cog health-check answered ${res.status}`);
    const body = JSON.parse(res.body.toString('utf8')) as { status?: string };
    return String(body.status ?? 'UNKNOWN');
  }

  private async put(run: Run): Promise<RunState> {
    const res = await this.call('PUT', `/predictions/${encodeURIComponent(run.runId)}`, {
      id: run.runId,
      input: run.input,
      webhook: run.callbackUrl,
      webhook_events_filter: ['start', 'output', 'logs', 'completed'],
    });
    const text = res.body.toString('utf8');
    if (res.status === 200 || res.status === 201 || res.status === 202) return parsePrediction(JSON.parse(text));
    if (res.status === 409) throw new TrainerBusyError('the Cog trainer is busy with another prediction');
    if (res.status === 422) throw new TrainerFailedError(`the trainer refused the input: ${validationDetail(text)}`);
    if (res.status >= 500) throw new TransientError(`Cog answered ${res.status}`);
    throw new TrainerFailedError(`Cog answered ${res.status}: ${text.slice(0, 500)}`);
  }

  private async call(method: string, path: string, body?: unknown) {
    const url = this.opts.url.replace(/\/+$/, '') + path;
    try {
      return await request(url, {
        method,
        headers: body ? { 'content-type': 'application/json', prefer: 'respond-async' } : {},
        body: body ? JSON.stringify(body) : undefined,
        timeoutMs: this.opts.timeoutMs ?? 30_000,
        allow: this.opts.allow,
        maxResponseBytes: 4 * 1024 * 1024,
      });
    } catch (e) {
      const err = e as Error & { code?: string };
      if (err.code === 'EGRESS_REFUSED') throw new TrainerFailedError(err.message);
      throw new TransientError(`Cog trainer not reachable: ${err.message}`);
    }
  }
}

function validationDetail(text: string): string {
  try {
    const detail = (JSON.parse(text) as { detail?: unknown }).detail;
    if (Array.isArray(detail)) {
      return detail.map((d: { loc?: unknown[]; msg?: string }) => `${(d.loc ?? []).slice(1).join('.')}: ${d.msg}`).join('; ');
    }
    return String(detail ?? text).slice(0, 500);
  } catch {
    return text.slice(0, 500);
  }
}

/** A Cog prediction → RunState. The output archive is a URL (a string, or the first of a list). */
export function parsePrediction(p: Record<string, unknown>): RunState & { runId?: string } {
  const status = String(p.status) as RunStatus;
  if (!STATUSES.has(status)) throw new TrainerFailedError(`trainer reported an unknown status: ${String(p.status)}`);
  const metrics = (p.metrics ?? {}) as { predict_time?: unknown };
  return {
    runId: typeof p.id === 'string' ? p.id : undefined,
    status,
    output: outputUrl(p.output),
    logs: typeof p.logs === 'string' ? p.logs : null,
    error: p.error == null ? null : String(p.error),
    predict_time: typeof metrics.predict_time === 'number' ? metrics.predict_time : null,
  };
}

function outputUrl(output: unknown): string | null {
  if (typeof output === 'string') return output;
  if (Array.isArray(output)) {
    const urls = output.filter((o): o is string => typeof o === 'string');
    return urls.find((u) => /\.(zip|tar|tar\.gz|tgz|safetensors)(\?|$)/i.test(u)) ?? urls[0] ?? null;
  }
  return null;
}
