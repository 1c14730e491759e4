/** `list`, `get`, `logs`, `cancel`, `versions`, `trainers`, `templates`: tables for people, `--json` for scripts. */
import { UsageError } from '../client.ts';
import { TERMINAL, type Training } from '../follow.ts';
import { when } from '../output.ts';
import type { Context } from './common.ts';
import { modelOf, versionOf } from './train.ts';

const short = (v: string | null | undefined) => (v ? v.slice(0, 12) : '');
const path = (id: string) => `/v1/trainings/${encodeURIComponent(id)}`;

export async function list(ctx: Context, o: { json?: boolean; limit: string }): Promise<number> {
  const limit = Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit: a whole number of trainings, at least 1');
  const trainings = await ctx.client().list<Training>('/v1/trainings', limit);
  if (o.json) return ctx.out.json(trainings), 0;
  ctx.out.table(
    ['ID', 'MODEL', 'STATUS', 'CREATED', 'VERSION'],
    trainings.map((t) => [t.id, modelOf(t), ctx.out.status(t.status), when(t.created_at), short(versionOf(t))]),
  );
  return 0;
}

export async function get(ctx: Context, id: string, o: { json?: boolean }): Promise<number> {
  const t = await ctx.client().get<Training>(path(id));
  if (o.json) return ctx.out.json(t), 0;
  const lines = t.logs ? t.logs.trimEnd().split('\n') : [];
  const rows: [string, string | null | undefined][] = [
    ['id', t.id],
    ['model', modelOf(t)],
    ['status', ctx.out.status(t.status)],
    ['created', when(t.created_at)],
    ['version', versionOf(t)],
    ['error', t.error],
    ['notes', t.notes as string | null],
    ['logs', lines.length ? `${lines.length} lines, last: ${lines[lines.length - 1]} (dreambooth logs ${t.id})` : null],
  ];
  for (const [k, v] of rows) if (v) ctx.out.line(`${k.padEnd(8)} ${v}`);
  return 0;
}

export async function logs(ctx: Context, id: string, o: { follow?: boolean }): Promise<number> {
  const client = ctx.client();
  let printed = '';
  for (;;) {
    const t = await client.get<Training>(path(id));
    const text = t.logs ?? '';
    // Logs grow by appending; a trainer that starts over is shown from its new start.
    process.stdout.write(text.startsWith(printed) ? text.slice(printed.length) : `\n${text}`);
    printed = text;
    if (!o.follow || TERMINAL.has(t.status)) {
      if (o.follow) ctx.out.note(`training ${t.id} ${ctx.out.status(t.status)}${t.error ? `: ${t.error}` : ''}`);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export async function cancel(ctx: Context, id: string, o: { json?: boolean }): Promise<number> {
  const t = await ctx.client().post<Training>(`${path(id)}/cancel`);
  if (o.json) return ctx.out.json(t), 0;
  ctx.out.line(t.status === 'canceled' ? `training ${t.id} canceled` : `training ${t.id} had already ${t.status}; nothing changed`);
  return 0;
}

export async function versions(ctx: Context, model: string, o: { json?: boolean; limit: string }): Promise<number> {
  if (!/^[^/\s]+\/[^/\s]+$/.test(model)) throw new UsageError(`${model}: give the model as owner/name`);
  const limit = Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit: a whole number of versions, at least 1');
  type Version = { id: string; image: string; training_id: string; created_at: string; template?: { name?: string } | string | null; notes?: string | null };
  // Pages are followed until the limit: the API answers newest first.
  const all = await ctx.client().list<Version>(`/v1/models/${model}/versions`, limit);
  if (o.json) return ctx.out.json(all), 0;
  ctx.out.table(
    ['VERSION', 'CREATED', 'TEMPLATE', 'TRAINING', 'IMAGE'],
    all.map((v) => [short(v.id), when(v.created_at), typeof v.template === 'string' ? v.template : v.template?.name, v.training_id, v.image]),
  );
  return 0;
}

export async function trainers(ctx: Context, o: { json?: boolean }): Promise<number> {
  // `key` is what --trainer takes; model and version are the Trainings-API coordinates.
  type Trainer = {
    key: string;
    name: string;
    model?: string;
    owner?: string;
    version?: string;
    backend?: string;
    description?: string | null;
    capacity?: number;
    busy?: number;
    queue_length?: number;
  };
  const all = await ctx.client().list<Trainer>('/v1/trainers');
  if (o.json) return ctx.out.json(all), 0;
  // BUSY is slots in use of the trainer's capacity; QUEUED, trainings waiting for one.
  const count = (n: number | undefined) => (n === undefined ? '' : String(n));
  ctx.out.table(
    ['KEY', 'MODEL', 'VERSION', 'BACKEND', 'BUSY', 'QUEUED', 'DESCRIPTION'],
    all.map((t) => [t.key, t.model, short(t.version), t.backend, t.capacity === undefined ? '' : `${count(t.busy)}/${t.capacity}`, count(t.queue_length), t.description]),
  );
  return 0;
}

export async function templates(ctx: Context, o: { json?: boolean }): Promise<number> {
  type Template = { name: string; repository: string; digests?: string[]; default?: boolean; description?: string | null };
  const all = await ctx.client().list<Template>('/v1/templates');
  if (o.json) return ctx.out.json(all), 0;
  ctx.out.table(
    ['NAME', 'DEFAULT', 'DIGEST', 'REPOSITORY', 'DESCRIPTION'],
    all.map((t) => [t.name, t.default ? '*' : '', short(t.digests?.[0]), t.repository, t.description]),
  );
  return 0;
}
