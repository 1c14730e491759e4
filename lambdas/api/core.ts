/** The token-authorised API: create, read, list and cancel trainings; versions; trainers; secret. */
import { StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import type { BaseDeps, Deps } from '#shared/deps';
import { ApiError, badRequest, notFound, zodDetail } from '#shared/errors';
import { checkUrlSyntax, EgressError } from '#shared/egress';
import { newTrainingId, runIdFor, sha256Hex } from '#shared/ids';
import { describeTrainer, resolveTrainer, backendFor, type ResolvedTrainer } from '#shared/trainers/index';
import { isTerminal, notStarted, view, type Flavour, type TrainingRecord, type WebhookEvent } from '#shared/training';
import type { Logger } from '#shared/log';
import { retemplateSchema, seedRequestSchema, trainingsRequestSchema, EVENTS } from './schemas.ts';
import type { VersionRecord } from '#shared/store';
import { checkUploaded } from './uploads.ts';
import { resolveTemplate, type TemplateRegistry } from './templates.ts';

export interface ApiDeps extends Deps<'sfn' | 'secrets'> {
  lambda: LambdaClient;
  stateMachineArn: string;
  notifyFunction: string;
  webhookSecret: () => Promise<string>;
  log: Logger;
  templates: TemplateRegistry;
}

export interface ApiRequest {
  method: string;
  path: string;
  query: Record<string, string | undefined>;
  body: string | null;
  /** Owners this token may use (`*` = any). */
  owners: string[];
  /** The `Idempotency-Key` header, if sent. */
  idempotencyKey?: string;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

export async function route(d: ApiDeps, req: ApiRequest): Promise<ApiResponse> {
  const { method, path } = req;
  let m: RegExpMatchArray | null;
  if (path === '/v1/trainings' && method === 'POST') return createSeedTraining(d, req);
  if (path === '/v1/trainings' && method === 'GET') return listTrainings(d, req);
  if ((m = path.match(/^\/v1\/trainings\/([^/]+)$/)) && method === 'GET') return { status: 200, body: view(await ownedTraining(d, req, m[1]!), d.publicUrl) };
  if ((m = path.match(/^\/v1\/trainings\/([^/]+)\/cancel$/)) && method === 'POST') return cancelTraining(d, req, m[1]!);
  if ((m = path.match(/^\/v1\/models\/([^/]+)\/([^/]+)\/versions\/([^/]+)$/)) && method === 'GET') return getVersion(d, req, m[1]!, m[2]!, m[3]!);
  if ((m = path.match(/^\/v1\/models\/([^/]+)\/([^/]+)$/)) && method === 'GET') return getModel(d, req, m[1]!, m[2]!);
  if ((m = path.match(/^\/v1\/models\/([^/]+)\/([^/]+)\/versions$/)) && method === 'GET') return listVersions(d, req, m[1]!, m[2]!);
  if ((m = path.match(/^\/v1\/models\/([^/]+)\/([^/]+)\/versions$/)) && method === 'POST') return retemplate(d, req, m[1]!, m[2]!);
  if (path === '/v1/webhooks/default/secret' && method === 'GET') return { status: 200, body: { key: await d.webhookSecret() } };
  if (path === '/v1/trainers' && method === 'GET') return listTrainers(d);
  if (path === '/v1/templates' && method === 'GET') return listTemplates(d);
  if ((m = path.match(/^\/v1\/models\/([^/]+)\/([^/]+)\/versions\/([^/]+)\/trainings$/)) && method === 'POST') {
    return createTrainingsTraining(d, req, m[1]!, m[2]!, m[3]!);
  }
  throw new ApiError(404, `no route for ${method} ${path}`);
}

function parseJson(d: BaseDeps, body: string | null): unknown {
  if (body === null || body.trim() === '') throw badRequest('the request body is empty: send a JSON object');
  if (Buffer.byteLength(body) > d.config.limits.body_max_bytes) {
    throw new ApiError(413, `the request body exceeds ${d.config.limits.body_max_bytes} bytes`);
  }
  try {
    return JSON.parse(body);
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
}

const canUse = (owners: string[], owner: string) => owners.includes('*') || owners.includes(owner);

function checkEgress(d: BaseDeps, field: string, url: unknown): void {
  if (typeof url !== 'string') return;
  try {
    checkUrlSyntax(url, { allow: d.config.egress.allow });
  } catch (e) {
    if (e instanceof EgressError) throw badRequest(`${field}: ${e.detail}`);
    throw e;
  }
}

async function createSeedTraining(d: ApiDeps, req: ApiRequest): Promise<ApiResponse> {
  const parsed = seedRequestSchema(d.config.limits.notes_max_chars).safeParse(parseObject(d, req.body));
  if (!parsed.success) throw badRequest(zodDetail(parsed.error));
  const body = parsed.data;
  const trainer = resolveTrainer(d.config, body.trainer_version);
  if (!trainer) {
    throw badRequest(`trainer_version: unknown trainer ${body.trainer_version}; configured trainers: ${Object.keys(d.config.trainers).join(', ')}`);
  }
  checkEgress(d, 'webhook_completed', body.webhook_completed);
  return createTraining(d, req, {
    flavour: 'seed',
    trainer,
    model: body.model,
    input: body.input,
    templateRef: body.template_version,
    notes: body.notes ?? null,
    webhook: body.webhook_completed ?? null,
    events: ['completed'],
  });
}

/** Replicate's Trainings API: the trainer is the model version of the route. */
async function createTrainingsTraining(d: ApiDeps, req: ApiRequest, owner: string, name: string, version: string): Promise<ApiResponse> {
  const trainer = resolveTrainer(d.config, version);
  if (!trainer || trainer.model !== `${owner}/${name}`) {
    const known = Object.entries(d.config.trainers).map(([n, t]) => {
      const r = describeTrainer(d.config, n, t);
      return `${r.model}/versions/${r.version}`;
    });
    throw notFound(`no trainer ${owner}/${name} with version ${version}; trainers: ${known.join(', ')}`);
  }
  const parsed = trainingsRequestSchema(d.config.limits.notes_max_chars).safeParse(parseObject(d, req.body));
  if (!parsed.success) throw badRequest(zodDetail(parsed.error));
  const body = parsed.data;
  checkEgress(d, 'webhook', body.webhook);
  return createTraining(d, req, {
    flavour: 'trainings',
    trainer,
    model: body.destination,
    input: body.input,
    templateRef: body.template_version,
    notes: body.notes ?? null,
    webhook: body.webhook ?? null,
    events: body.webhook_events_filter ?? [...EVENTS],
  });
}

interface NewTraining {
  flavour: Flavour;
  trainer: ResolvedTrainer;
  model: string;
  input: Record<string, unknown>;
  templateRef: string | undefined;
  notes: string | null;
  webhook: string | null;
  events: WebhookEvent[];
}

async function createTraining(d: ApiDeps, req: ApiRequest, n: NewTraining): Promise<ApiResponse> {
  const template = await resolveTemplate(d.config, n.templateRef, d.templates);
  checkEgress(d, 'input.instance_data', n.input.instance_data);
  await checkUploaded(d, n.input.instance_data);
  const [owner] = n.model.split('/') as [string];
  // 404 as for reads: whether an owner exists is not for other tokens to learn.
  if (!canUse(req.owners, owner)) throw notFound(`${n.flavour === 'seed' ? 'model' : 'destination'}: no model ${n.model} for this token`);

  const id = newTrainingId();
  const replay = await claimIdempotencyKey(d, req, id);
  if (replay) return replay;
  const t: TrainingRecord = {
    id,
    flavour: n.flavour,
    model: n.model,
    owner,
    trainer: n.trainer.name,
    trainer_backend: n.trainer.config.backend,
    trainer_model: n.trainer.model,
    trainer_version: n.trainer.version,
    input: n.input,
    template,
    notes: n.notes,
    webhook: n.webhook,
    webhook_events_filter: n.events,
    ...notStarted(id, d.now().toISOString()),
  };
  await d.store.createTraining(t);
  await startExecution(d, t);
  d.log.info('training created', { training_id: t.id, model: t.model, trainer: t.trainer, template: template.name, flavour: t.flavour });
  return { status: 201, body: view(t, d.publicUrl) };
}

/**
 * `Idempotency-Key`: the same key with the same body answers the training it created; with
 * another body, 409. Keys are scoped to the token's owners and kept with the trainings.
 */
async function claimIdempotencyKey(d: ApiDeps, req: ApiRequest, id: string): Promise<ApiResponse | null> {
  const key = req.idempotencyKey?.trim();
  if (!key) return null;
  if (key.length > 255) throw badRequest('Idempotency-Key: at most 255 characters');
  const scope = sha256Hex(`${[...req.owners].sort().join(',')}\n${key}`);
  const body = sha256Hex(`${req.path}\n${req.body ?? ''}`);
  const { created, value } = await d.store.remember(scope, { body, training_id: id });
  if (created) return null;
  if (value.body !== body) throw new ApiError(409, 'Idempotency-Key was already used with another request body; use a new key');
  const t = await d.store.getTraining(String(value.training_id));
  if (!t) throw new ApiError(409, 'the request with this Idempotency-Key is still being processed; retry shortly');
  return { status: 201, body: view(t, d.publicUrl) };
}

function parseObject(d: BaseDeps, body: string | null): Record<string, unknown> {
  const raw = parseJson(d, body);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw badRequest('the request body must be a JSON object');
  return raw as Record<string, unknown>;
}

async function startExecution(d: ApiDeps, t: TrainingRecord, extra: Record<string, unknown> = {}): Promise<void> {
  try {
    await d.sfn.send(
      new StartExecutionCommand({
        stateMachineArn: d.stateMachineArn,
        name: t.id,
        input: JSON.stringify({ training_id: t.id, model: t.model, trainer: t.trainer, template: t.template.name, ...extra }),
      }),
    );
  } catch (e) {
    // Nothing lost: the training says why it never ran.
    await d.store.updateTraining(t.id, { status: 'failed', error: 'the workflow could not be started', completed_at: d.now().toISOString() });
    d.log.error('StartExecution failed', { training_id: t.id, error: (e as Error).name });
    throw new ApiError(503, 'the training could not be started; try again');
  }
}

async function ownedTraining(d: BaseDeps, req: ApiRequest, id: string): Promise<TrainingRecord> {
  const t = /^[a-z0-9]{20,40}$/.test(id) ? await d.store.getTraining(id) : null;
  // 404 rather than 403 for another owner's training, so ids don't leak.
  if (!t || !canUse(req.owners, t.owner)) throw notFound(`training ${id} not found`);
  return t;
}

async function listTrainings(d: BaseDeps, req: ApiRequest): Promise<ApiResponse> {
  let page;
  try {
    page = await d.store.listTrainings(d.config.limits.page_size, req.query.cursor);
  } catch (e) {
    if ((e as Error).name === 'BadCursorError') throw badRequest((e as Error).message);
    throw e;
  }
  // Another owner's trainings are left out (a page may come back short; its cursors still hold).
  const results = page.results.filter((t) => canUse(req.owners, t.owner)).map((t) => view(t, d.publicUrl));
  const url = (c: string | null) => (c ? `${d.publicUrl}/v1/trainings?cursor=${encodeURIComponent(c)}` : null);
  return { status: 200, body: { previous: url(page.previous), next: url(page.next), results } };
}

async function cancelTraining(d: ApiDeps, req: ApiRequest, id: string): Promise<ApiResponse> {
  const t = await ownedTraining(d, req, id);
  if (isTerminal(t.status)) return { status: 200, body: view(t, d.publicUrl) };
  const updated = await d.store.updateTraining(
    t.id,
    { cancel_requested: true, status: 'canceled', completed_at: d.now().toISOString(), task_token: null },
    { status: ['starting', 'processing', 'pushing'] },
  );
  if (!updated) return { status: 200, body: view((await d.store.getTraining(t.id))!, d.publicUrl) };

  if (t.run.started && !t.run.terminal) {
    try {
      await (await backendFor(d.config, t.trainer, d)).cancel(t.run.id);
    } catch (e) {
      d.log.warn('trainer cancel failed', { training_id: t.id, error: (e as Error).message });
    }
  }
  const executionArn = d.stateMachineArn.replace(':stateMachine:', ':execution:') + `:${t.id}`;
  try {
    // Stopping the execution also stops a running build (startBuild.sync).
    await d.sfn.send(new StopExecutionCommand({ executionArn, error: 'TrainingCanceled', cause: 'canceled through the API' }));
  } catch (e) {
    if ((e as Error).name !== 'ExecutionDoesNotExist') throw e;
  }
  // A stopped execution runs no Catch, so the webhook is sent from here (async, retried by Lambda).
  await d.lambda.send(
    new InvokeCommand({
      FunctionName: d.notifyFunction,
      InvocationType: 'Event',
      Payload: Buffer.from(JSON.stringify({ training_id: t.id, event: 'completed' })),
    }),
  );
  d.log.info('training canceled', { training_id: t.id });
  return { status: 200, body: view(updated, d.publicUrl) };
}

async function getVersion(d: BaseDeps, req: ApiRequest, owner: string, name: string, version: string): Promise<ApiResponse> {
  const v = canUse(req.owners, owner) ? await d.store.getVersion(`${owner}/${name}`, version) : null;
  if (!v) throw notFound(`version ${version} of ${owner}/${name} not found`);
  // Exactly these fields: local-mode users and scripts depend on the shape.
  return { status: 200, body: { id: v.id, model: v.model, image: v.image, notes: v.notes, training_id: v.training_id, created_at: v.created_at } };
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
});

async function getModel(d: BaseDeps, req: ApiRequest, owner: string, name: string): Promise<ApiResponse> {
  const page = canUse(req.owners, owner) ? await d.store.listVersions(`${owner}/${name}`, 1) : null;
  const latest = page?.results[0];
  // A model exists once it has a version (models are created by their first push).
  if (!latest) throw notFound(`model ${owner}/${name} not found`);
  return {
    status: 200,
    body: { owner, name, url: `${d.publicUrl}/v1/models/${owner}/${name}`, versions_url: `${d.publicUrl}/v1/models/${owner}/${name}/versions`, latest_version: versionView(latest) },
  };
}

async function listVersions(d: BaseDeps, req: ApiRequest, owner: string, name: string): Promise<ApiResponse> {
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

/**
 * A new version from a finished training's weights on another template, without retraining:
 * the same workflow, whose train step finds the run over (the staged archive is reused while
 * the bucket keeps it).
 */
async function retemplate(d: ApiDeps, req: ApiRequest, owner: string, name: string): Promise<ApiResponse> {
  const parsed = retemplateSchema(d.config.limits.notes_max_chars).safeParse(parseObject(d, req.body));
  if (!parsed.success) throw badRequest(zodDetail(parsed.error));
  const body = parsed.data;
  const model = `${owner}/${name}`;
  const source = await ownedTraining(d, req, body.training_id);
  if (source.model !== model) throw badRequest(`training_id: training ${source.id} pushed to ${source.model}, not ${model}`);
  if (source.status !== 'succeeded' || !source.run.output) {
    throw new ApiError(409, `training_id: training ${source.id} is ${source.status}; only a succeeded training's weights can be re-templated`);
  }
  checkEgress(d, 'webhook', body.webhook);
  const template = await resolveTemplate(d.config, body.template_version, d.templates);
  const id = newTrainingId();
  const replay = await claimIdempotencyKey(d, req, id);
  if (replay) return replay;
  const now = d.now().toISOString();
  const t: TrainingRecord = {
    ...source,
    id,
    template,
    notes: body.notes ?? null,
    webhook: body.webhook === undefined ? source.webhook : body.webhook,
    status: 'pushing',
    created_at: now,
    started_at: now,
    completed_at: null,
    error: null,
    version: null,
    image: null,
    cancel_requested: false,
    run: { ...source.run, id: runIdFor(id) },
    task_token: null,
    logs_event_at: null,
    webhook_outcome: null,
    retemplate_of: source.id,
  };
  await d.store.createTraining(t);
  // The run is already over (copied from the source), so the train step completes at once with
  // its output and the execution goes straight on to stage, build and push.
  await startExecution(d, t, { retemplate_of: source.id });
  d.log.info('re-template started', { training_id: id, source: source.id, model, template: template.name });
  return { status: 201, body: view(t, d.publicUrl) };
}

function listTemplates(d: BaseDeps): ApiResponse {
  const results = Object.entries(d.config.templates.catalog).map(([name, t]) => ({
    name,
    repository: t.repository,
    digests: t.digests,
    default: name === d.config.templates.default,
    description: t.description,
    inputs: t.inputs,
  }));
  return { status: 200, body: { results, next: null } };
}

function listTrainers(d: BaseDeps): ApiResponse {
  const results = Object.entries(d.config.trainers).map(([name, t]) => {
    const r = describeTrainer(d.config, name, t);
    return { name, owner: r.owner, model: r.model, version: r.version, backend: t.backend, description: t.description ?? null };
  });
  return { status: 200, body: { results, next: null } };
}
