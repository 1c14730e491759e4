/**
 * `dreambooth run owner/name[:version] -i key=value…`: one prediction, as Replicate's client
 * runs it — created with `Prefer: wait`, polled until it ends — its files saved beside you.
 */
import { resolve } from 'node:path';
import { MODEL_RE, MODEL_RULE } from '../../lambdas/api/schemas.ts';
import { NetworkError, UsageError, type Client } from '../client.ts';
import { dataUri, fileUrls, saveFiles } from '../files.ts';
import { clock } from '../output.ts';
import { reporterFor, type Reporter } from '../progress.ts';
import { parseInputs } from './train.ts';
import type { Context } from './common.ts';

/** Replicate's prediction object, the fields this command reads. */
export interface Prediction {
  id: string;
  status: string;
  output?: unknown;
  logs?: string | null;
  error?: unknown;
  urls?: { get?: string; cancel?: string };
  [k: string]: unknown;
}

export const TERMINAL_PREDICTION = new Set(['succeeded', 'failed', 'canceled', 'aborted']);

export interface RunOptions {
  input: string[];
  output?: string;
  json?: boolean;
  /** Between polls. @default 500 */
  pollMs?: number;
}

export async function run(ctx: Context, target: string, o: RunOptions): Promise<number> {
  const { model, version } = parseTarget(target);
  const input = await readFileInputs(parseInputs(o.input));
  const dir = resolve(o.output ?? '.');
  const client = ctx.client();
  const t0 = Date.now();
  // An answer held up to the API's limit: a prediction that finishes within it needs no poll.
  const wait = { prefer: 'wait' };
  const created = version
    ? await client.post<Prediction>('/v1/predictions', { version: `${model}:${version}`, input }, wait, 90_000)
    : await client.post<Prediction>(`/v1/models/${model}/predictions`, { input }, wait, 90_000);
  ctx.out.note(`Prediction ${created.id}: ${model}${version ? `:${version.slice(0, 12)}` : ''}`);
  const done = await followPrediction({ client, reporter: reporterFor(ctx.out), prediction: created, pollMs: o.pollMs });
  if (done.status !== 'succeeded') {
    if (o.json) ctx.out.json({ prediction: done });
    ctx.out.error(`prediction ${done.id} ${done.status}${done.error ? `: ${describe(done.error)}` : ''}`);
    return 1;
  }
  const origin = new URL(client.baseUrl).origin;
  const files = await saveFiles(fileUrls(done.output), dir, {
    stem: done.id,
    // The token goes to the API's own URLs only; presigned URLs carry their own authority.
    headersFor: (url) => (new URL(url).origin === origin ? client.authorization() : {}),
  });
  if (o.json) {
    ctx.out.json({ prediction: done, files });
    return 0;
  }
  ctx.out.note(`${ctx.out.style('green', 'Succeeded')} in ${clock(Date.now() - t0)}`);
  for (const path of files) ctx.out.line(path);
  // An output without files (text, numbers) is the result itself.
  if (files.length === 0) ctx.out.line(typeof done.output === 'string' ? done.output : JSON.stringify(done.output));
  return 0;
}

/** `owner/name` or `owner/name:version`. */
export function parseTarget(target: string): { model: string; version: string | null } {
  const colon = target.indexOf(':');
  const model = colon < 0 ? target : target.slice(0, colon);
  const version = colon < 0 ? null : target.slice(colon + 1);
  if (!MODEL_RE.test(model)) throw new UsageError(`${target}: name a model as owner/name or owner/name:version (${MODEL_RULE})`);
  if (version !== null && !/^[0-9a-f]{64}$/.test(version)) throw new UsageError(`${target}: a version is 64 hex characters (\`dreambooth versions ${model}\`)`);
  return { model, version };
}

/** `-i key=@path` sends the file as a data URI, as Replicate's client sends a file input. */
async function readFileInputs(input: Record<string, unknown>): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    if (typeof value !== 'string' || !value.startsWith('@')) {
      out[key] = value;
      continue;
    }
    const path = value.slice(1);
    out[key] = await dataUri(path).catch((e: NodeJS.ErrnoException) => {
      throw new UsageError(`-i ${key}=@${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
  }
  return out;
}

export interface FollowPredictionOptions {
  client: Client;
  reporter: Reporter;
  prediction: Prediction;
  pollMs?: number;
}

/** Several misses in a row before giving up, as for trainings: a restarting API should not end a wait. */
const MAX_MISSES = 6;

/** Polls `GET /v1/predictions/{id}` until the prediction ends; shows each status and each new log line. */
export async function followPrediction(o: FollowPredictionOptions): Promise<Prediction> {
  let p = o.prediction;
  let shown = 0;
  let misses = 0;
  try {
    for (;;) {
      const logs = p.logs ?? '';
      // Logs only grow; a shorter text (a reset) is shown again from its start.
      if (logs.length < shown) shown = 0;
      const fresh = logs.slice(shown);
      const complete = TERMINAL_PREDICTION.has(p.status) ? fresh : fresh.slice(0, fresh.lastIndexOf('\n') + 1);
      for (const line of complete.split('\n')) if (line.trim()) o.reporter.note(line);
      shown += complete.length;
      if (TERMINAL_PREDICTION.has(p.status)) break;
      o.reporter.phase(p.status);
      await new Promise((r) => setTimeout(r, o.pollMs ?? 500));
      try {
        p = await o.client.get<Prediction>(`/v1/predictions/${encodeURIComponent(p.id)}`);
        misses = 0;
      } catch (e) {
        if (!(e instanceof NetworkError) || ++misses >= MAX_MISSES) throw e;
        o.reporter.note(`${e.message}; retrying`);
      }
    }
    o.reporter.done(p.status);
    return p;
  } finally {
    o.reporter.pause();
  }
}

const describe = (error: unknown) => (typeof error === 'string' ? error : JSON.stringify(error));
