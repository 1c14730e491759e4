/** The reads: trainings, models and their versions, trainers, templates. */
import type { JsonSchema } from '#shared/input-schema';
import { withoutInput } from './prediction-inputs.ts';
import type { BaseDeps } from '#shared/deps';
import { badRequest, notFound } from '#shared/errors';
import type { VersionRecord, VersionWeights } from '#shared/store';
import { memberOf, TrainerQueue, waitingLine } from '#shared/trainer-queue/index';
import { view, type TrainingRecord } from '#shared/training';
import { canUse } from './requests.ts';
import type { ApiDeps, ApiRequest, ApiResponse } from './types.ts';

export async function ownedTraining(d: BaseDeps, req: ApiRequest, id: string): Promise<TrainingRecord> {
  const t = /^[a-z0-9]{20,40}$/.test(id) ? await d.store.getTraining(id) : null;
  // 404 rather than 403 for another owner's training, so ids don't leak.
  if (!t || !canUse(req.owners, t.owner)) throw notFound(`training ${id} not found`);
  return t;
}

export async function listTrainings(d: BaseDeps, req: ApiRequest): Promise<ApiResponse> {
  let page;
  try {
    page = await d.store.listTrainings(req.owners, d.config.limits.page_size, req.query.cursor);
  } catch (e) {
    if ((e as Error).name === 'BadCursorError') throw badRequest((e as Error).message);
    throw e;
  }
  const results = page.results.map((t) => view(t, d.publicUrl));
  const url = (c: string | null) => (c ? `${d.publicUrl}/v1/trainings?cursor=${encodeURIComponent(c)}` : null);
  return { status: 200, body: { previous: url(page.previous), next: url(page.next), results } };
}

export async function getVersion(d: ApiDeps, req: ApiRequest, owner: string, name: string, version: string): Promise<ApiResponse> {
  const v = canUse(req.owners, owner) ? await d.store.getVersion(`${owner}/${name}`, version) : null;
  if (!v) throw notFound(`version ${version} of ${owner}/${name} not found`);
  // The listed view, and a weights version's schema: local-mode users and scripts depend on the shape.
  const body = versionView(v);
  if (!v.weights) return { status: 200, body };
  return { status: 200, body: { ...body, ...(await weightsVersionFields(d, v, v.weights)) } };
}

/**
 * A weights version shows its weights' size and digest (never their key: only the service
 * hands them to the template) and the template's schema without the input the service sets.
 */
async function weightsVersionFields(d: ApiDeps, v: VersionRecord, w: VersionWeights) {
  const doc = await d.templates.openApi?.(v.template.repository, v.template.digest).catch((e: Error) => {
    d.log.warn('template schema unavailable', { version: v.id, error: e.message });
    return null;
  });
  return { weights: { size: w.size, sha256: w.sha256 }, openapi_schema: documentWithoutInput(doc ?? null, w.input) };
}

/** A Cog OpenAPI document without one of its inputs (a copy; null stays null). */
export function documentWithoutInput(doc: unknown, input: string): unknown {
  const schemas = (doc as { components?: { schemas?: Record<string, unknown> } } | null)?.components?.schemas;
  const Input = schemas?.Input as JsonSchema | undefined;
  if (!Input?.properties) return doc;
  const components = (doc as { components: Record<string, unknown> }).components;
  return { ...(doc as object), components: { ...components, schemas: { ...schemas, Input: withoutInput(Input, input) } } };
}

/** A version as the model routes list it: with the template it was built on. */
const versionView = (v: VersionRecord) => ({
  id: v.id,
  model: v.model,
  image: v.image,
  notes: v.notes,
  training_id: v.training_id,
  template: v.template,
  created_at: v.created_at,
  ...(v.weights ? { weights: { size: v.weights.size, sha256: v.weights.sha256 } } : {}),
});

export async function getModel(d: BaseDeps, req: ApiRequest, owner: string, name: string): Promise<ApiResponse> {
  const page = canUse(req.owners, owner) ? await d.store.listVersions(`${owner}/${name}`, 1) : null;
  const latest = page?.results[0];
  // A model exists once it has a version (models are created by their first push).
  if (!latest) throw notFound(`model ${owner}/${name} not found`);
  return {
    status: 200,
    body: {
      owner,
      name,
      url: `${d.publicUrl}/v1/models/${owner}/${name}`,
      versions_url: `${d.publicUrl}/v1/models/${owner}/${name}/versions`,
      latest_version: versionView(latest),
    },
  };
}

export async function listVersions(d: BaseDeps, req: ApiRequest, owner: string, name: string): Promise<ApiResponse> {
  if (!canUse(req.owners, owner)) throw notFound(`model ${owner}/${name} not found`);
  let page;
  try {
    page = await d.store.listVersions(`${owner}/${name}`, d.config.limits.page_size, req.query.cursor);
  } catch (e) {
    if ((e as Error).name === 'BadCursorError') throw badRequest((e as Error).message);
    throw e;
  }
  const url = (c: string | null) => (c ? `${d.publicUrl}/v1/models/${owner}/${name}/versions?cursor=${encodeURIComponent(c)}` : null);
  return { status: 200, body: { previous: url(page.previous), next: url(page.next), results: page.results.map(versionView) } };
}

export function listTemplates(d: BaseDeps): ApiResponse {
  const results = Object.entries(d.config.templates.catalog).map(([name, t]) => ({
    name,
    repository: t.repository,
    digests: t.digests,
    default: name === d.config.templates.default,
    description: t.description,
    inputs: t.inputs,
    weights: t.weights,
  }));
  return { status: 200, body: { results, next: null } };
}

/**
 * A queued training's logs name its current place: the queue writes the line when the training
 * joins, and the place changes with every slot handed on, so it is read live here.
 */
export async function withQueuePlace(d: ApiDeps, t: TrainingRecord): Promise<TrainingRecord> {
  if (t.status !== 'starting' || !t.logs?.startsWith('waiting for trainer ')) return t;
  const ahead = await new TrainerQueue(d).position(memberOf(t));
  return ahead === null ? t : { ...t, logs: waitingLine(t.trainer, ahead) };
}
