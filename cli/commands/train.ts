/** `dreambooth train` and `dreambooth retemplate`: start a training, follow it, show the version. */
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { MODEL_MAX, MODEL_RE, MODEL_RULE } from '../../lambdas/api/schemas.ts';
import { UsageError, type Client } from '../client.ts';
import { follow, type Training } from '../follow.ts';
import { zipFile, zipFolder, type Archive } from '../images.ts';
import { bytes, clock, type Out } from '../output.ts';
import { byteBar } from '../progress.ts';
import { upload } from '../upload.ts';
import type { Context } from './common.ts';

export interface TrainOptions {
  model: string;
  trainer?: string;
  template?: string;
  notes?: string;
  input: string[];
  webhook?: string;
  wait: boolean;
  json?: boolean;
  cancelOnInterrupt?: boolean;
}

export async function train(ctx: Context, target: string, o: TrainOptions): Promise<number> {
  // Everything that can be refused locally is refused before the first request.
  if (!MODEL_RE.test(o.model) || o.model.length > MODEL_MAX) throw new UsageError(`--model ${o.model}: use ${MODEL_RULE} (at most ${MODEL_MAX} characters)`);
  const input = parseInputs(o.input);
  if ('instance_data' in input) throw new UsageError('-i instance_data=…: the photos come from the folder or .zip argument');
  const archive = openArchive(target);
  const client = ctx.client();
  const trainer = o.trainer ?? (await onlyTrainer(client));

  const what = archive.images === null ? archive.name : `${archive.images} photo${archive.images === 1 ? '' : 's'} as ${archive.name}`;
  ctx.out.note(`Uploading ${what} (${bytes(archive.size)}) to ${client.baseUrl}`);
  const bar = byteBar(ctx.out, archive.size, 'upload');
  const servingUrl = await upload(client, archive, (n) => bar.update(n)).finally(() => bar.stop());

  const created = await client.post<Training>(
    '/v1/trainings',
    {
      input: { ...input, instance_data: servingUrl },
      trainer_version: trainer,
      model: o.model,
      ...(o.template ? { template_version: o.template } : {}),
      ...(o.notes ? { notes: o.notes } : {}),
      ...(o.webhook ? { webhook_completed: o.webhook } : {}),
    },
    // A retried create (after a lost answer) then returns the same training.
    { 'idempotency-key': randomUUID() },
  );
  ctx.out.note(`Training ${created.id}: ${o.model} with trainer ${trainer}${o.template ? `, template ${o.template}` : ''}`);
  return finish(ctx, client, created, o);
}

export interface RetemplateOptions {
  template: string;
  notes?: string;
  webhook?: string;
  wait: boolean;
  json?: boolean;
  cancelOnInterrupt?: boolean;
}

export async function retemplate(ctx: Context, id: string, o: RetemplateOptions): Promise<number> {
  const client = ctx.client();
  const source = await client.get<Training>(`/v1/trainings/${encodeURIComponent(id)}`);
  const model = modelOf(source);
  const created = await client.post<Training>(
    `/v1/models/${model}/versions`,
    { training_id: source.id, template_version: o.template, ...(o.notes ? { notes: o.notes } : {}), ...(o.webhook ? { webhook: o.webhook } : {}) },
    { 'idempotency-key': randomUUID() },
  );
  ctx.out.note(`Training ${created.id}: ${model} from ${source.id}'s weights on template ${o.template}`);
  return finish(ctx, client, created, o);
}

async function finish(ctx: Context, client: Client, created: Training, o: { wait: boolean; json?: boolean; cancelOnInterrupt?: boolean }) {
  if (!o.wait) {
    if (o.json) ctx.out.json(created);
    else ctx.out.line(created.id);
    return 0;
  }
  const t0 = Date.now();
  const t = await follow({ client, out: ctx.out, training: created, cancelOnInterrupt: Boolean(o.cancelOnInterrupt) });
  const version = versionOf(t);
  if (t.status !== 'succeeded' || !version) {
    if (o.json) ctx.out.json({ training: t });
    ctx.out.error(`training ${t.id} ${t.status}${t.error ? `: ${t.error}` : ''}`);
    return 1;
  }
  const v = await client.get<{ id: string; image: string; model: string }>(`/v1/models/${modelOf(t)}/versions/${version}`);
  if (o.json) ctx.out.json({ training: t, version: v });
  else showVersion(ctx.out, t, v, Date.now() - t0);
  return 0;
}

function showVersion(out: Out, t: Training, v: { id: string; image: string; model: string }, ms: number) {
  out.note(`${out.style('green', 'Succeeded')} in ${clock(ms)}`);
  out.line(`Version  ${v.id}`);
  out.line(`Model    ${v.model}`);
  out.line(`Image    ${v.image}`);
  out.line('');
  // An OCI layout on disk (local mode without a registry) is loaded into docker first.
  let image = v.image;
  if (image.startsWith('oci:')) {
    image = `${v.model}:${v.id.slice(0, 12)}`;
    out.line('Load it into docker:');
    out.line(`  skopeo copy ${v.image} docker-daemon:${image}`);
  }
  const prompt = typeof t.input === 'object' && t.input ? String((t.input as Record<string, unknown>).instance_prompt ?? 'a photo') : 'a photo';
  out.line('Run it (needs a GPU):');
  out.line(`  docker run --gpus all -p 5000:5000 ${image}`);
  out.line(`  curl -s http://localhost:5000/predictions -H 'Content-Type: application/json' -d '${JSON.stringify({ input: { prompt } }).replace(/'/g, "'\\''")}'`);
}

/** The seed's object names the model and version; the Trainings API's, destination and output. */
export const modelOf = (t: Training): string => String(t.destination ?? t.model);
export const versionOf = (t: Training): string | null => t.version && !t.destination ? t.version : t.output?.version?.split(':')[1] ?? null;

function openArchive(target: string): Archive {
  if (!existsSync(target)) throw new UsageError(`${target}: no such file or folder`);
  if (statSync(target).isDirectory()) return zipFolder(target);
  if (/\.zip$/i.test(target)) return zipFile(target);
  throw new UsageError(`${target}: give a folder of photos or a .zip of them`);
}

/** `-i key=value`: numbers and booleans as JSON (the trainer's schema types them), the rest as text. */
export function parseInputs(pairs: string[]): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at < 1) throw new UsageError(`-i ${pair}: use -i key=value`);
    const [key, raw] = [pair.slice(0, at), pair.slice(at + 1)];
    input[key] = /^(-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null)$/.test(raw) ? JSON.parse(raw) : raw;
  }
  return input;
}

async function onlyTrainer(client: Client): Promise<string> {
  // The configuration key: what the seed's trainer_version takes.
  const trainers = await client.list<{ key: string }>('/v1/trainers');
  if (trainers.length === 1) return trainers[0]!.key;
  throw new UsageError(`choose a trainer with --trainer: ${trainers.map((t) => t.key).join(', ') || 'none are configured'}`);
}
