/**
 * Trainers as the API shows them, by their Trainings-API coordinates, with their input schema;
 * and a training's input checked against that schema at submit.
 */
import type { TrainerConfig } from '#shared/config';
import type { BaseDeps } from '#shared/deps';
import { ApiError, notFound } from '#shared/errors';
import { inputProblems } from '#shared/input-schema';
import { TrainerQueue } from '#shared/trainer-queue/index';
import { describeTrainer, type ResolvedTrainer, slotCount } from '#shared/trainers/index';
import type { ApiDeps, ApiResponse } from './types.ts';

/**
 * A trainer as the Trainings API addresses it: `owner`, `name` and `version` build its route
 * (`trainings_url`); `key` is its name in the configuration (also accepted as the seed's
 * `trainer_version`).
 */
function trainerView(d: BaseDeps, key: string, t: TrainerConfig) {
  const r = describeTrainer(d.config, key, t);
  const name = r.model.slice(r.owner.length + 1);
  return {
    owner: r.owner,
    name,
    version: r.version,
    model: r.model,
    key,
    backend: t.backend,
    description: t.description ?? null,
    trainings_url: `${d.publicUrl}/v1/models/${r.owner}/${name}/versions/${encodeURIComponent(r.version)}/trainings`,
  };
}

export async function listTrainers(d: ApiDeps): Promise<ApiResponse> {
  const queue = new TrainerQueue(d);
  const results = await Promise.all(
    Object.entries(d.config.trainers).map(async ([key, t]) => {
      const { busy, queued } = await queue.status(key);
      // Slots, slots in use, trainings waiting for one.
      return { ...trainerView(d, key, t), capacity: slotCount(t), busy, queue_length: queued };
    }),
  );
  return { status: 200, body: { results, next: null } };
}

/** One trainer with its input schema (the first configured under these coordinates). */
export async function getTrainer(d: ApiDeps, owner: string, name: string): Promise<ApiResponse> {
  const models = Object.entries(d.config.trainers).map(([k, t]) => [k, describeTrainer(d.config, k, t).model] as const);
  const key = models.find(([, model]) => model === `${owner}/${name}`)?.[0];
  if (!key) throw notFound(`no trainer ${owner}/${name}; trainers: ${models.map(([, m]) => m).join(', ')}`);
  const t = d.config.trainers[key]!;
  const found = await d.inputSchemas.lookup(describeTrainer(d.config, key, t));
  const schema = found.schema ? { input_schema: found.schema, input_schema_source: found.source } : { input_schema: null, input_schema_unavailable: found.reason };
  return { status: 200, body: { ...trainerView(d, key, t), ...schema } };
}

/**
 * The input against the trainer's schema, as Replicate checks it at create: 422 naming each
 * field. Without a schema the trainer alone checks (at start), as before; the reason is logged.
 */
export async function checkInput(d: ApiDeps, trainer: ResolvedTrainer, input: Record<string, unknown>): Promise<void> {
  const found = await d.inputSchemas.lookup(trainer);
  if (!found.schema) {
    d.log.warn('trainer input schema unavailable; inputs are left to the trainer', { trainer: trainer.name, reason: found.reason });
    return;
  }
  const problems = await inputProblems(found.schema, input);
  if (problems.length > 0) throw new ApiError(422, `${problems.join('; ')} (the input schema of ${found.source}; see GET /v1/trainers/${trainer.model})`);
}
