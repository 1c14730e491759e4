/** The create flows: the seed's POST /v1/trainings, Replicate's Trainings API, and a re-template. */
import { memberOf, TrainerQueue } from '#shared/trainer-queue/index';
import { StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ApiError, badRequest, notFound, zodDetail } from '#shared/errors';
import { ExecutionInput } from '#shared/execution';
import { ecrRepositoryNameProblem, newTrainingId, runIdFor } from '#shared/ids';
import { backendOf, describeTrainer, resolveTrainer, type ResolvedTrainer } from '#shared/trainers/index';
import { notStarted, view, type Flavour, type TrainingRecord, type WebhookEvent } from '#shared/training';
import { idempotently } from './idempotency.ts';
import { fillPath } from '#shared/routes';
import { ownedTraining } from './reads.ts';
import { canUse, checkEgress, parseObject } from './requests.ts';
import { MODEL_RE, MODEL_RULE, RESERVED_OWNER, retemplateSchema, seedRequestSchema, trainingsRequestSchema, EVENTS } from './schemas.ts';
import { checkWeightsInput, resolveTemplate } from './templates.ts';
import type { ApiDeps, ApiRequest, ApiResponse } from './types.ts';
import { checkUploaded } from './uploads.ts';
import { checkInput } from './trainers.ts';

export async function createSeedTraining(d: ApiDeps, req: ApiRequest): Promise<ApiResponse> {
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
export async function createTrainingsTraining(d: ApiDeps, req: ApiRequest, owner: string, name: string, version: string): Promise<ApiResponse> {
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
  // A trainer that cannot run here (local mode without a docker engine for a sagemaker trainer): refused before anything starts.
  const unavailable = backendOf(n.trainer.config).unavailable?.(n.trainer.config);
  if (unavailable) throw badRequest(`trainer_version: trainer ${n.trainer.name} cannot run here: ${unavailable}`);
  checkRepository(d, n.flavour === 'seed' ? 'model' : 'destination', n.model);
  const template = await resolveTemplate(d.config, n.templateRef, d.templates);
  await checkWeightsInput(d.templates, template);
  checkEgress(d, 'input.instance_data', n.input.instance_data);
  await checkUploaded(d, n.input.instance_data);
  await checkInput(d, n.trainer, n.input);
  const [owner] = n.model.split('/') as [string];
  // 404 as for reads: whether an owner exists is not for other tokens to learn.
  if (!canUse(req.owners, owner)) throw notFound(`${n.flavour === 'seed' ? 'model' : 'destination'}: no model ${n.model} for this token`);

  const id = newTrainingId();
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
  const stored = await idempotently(d.store, idempotencyOf(req), async () => {
    await d.store.createTraining(t);
    // In the trainer's queue from now: its place is its creation, not when its execution gets there.
    await new TrainerQueue(d).enqueue(memberOf(t), `${d.stateMachineArn.replace(':stateMachine:', ':execution:')}:${t.id}`);
    await startExecution(d, t);
    d.log.info('training created', { training_id: t.id, model: t.model, trainer: t.trainer, template: template.name, flavour: t.flavour });
    return t;
  });
  return { status: 201, body: view(stored, d.publicUrl) };
}

/**
 * The model's repository, as its registry names it (host aside), must be one ECR would create:
 * the schema checked the parts, this the whole with the configured prefix (256 characters at
 * most). Refused here, before a GPU is paid for, rather than by the push after the training.
 */
function checkRepository(d: ApiDeps, field: string, model: string): void {
  const r = d.config.registry;
  const repository =
    r.type === 'ecr' ? `${r.repository_prefix.replace(/\/+$/, '')}/${model}`
    : r.type === 'oci' ? [...r.host.split('/').slice(1), model].join('/')
    : model;
  const problem = ecrRepositoryNameProblem(repository);
  if (problem) throw badRequest(`${field}: ${model} would be pushed to the repository ${repository}, which ${problem}`);
}

const idempotencyOf = (req: ApiRequest) => ({ key: req.idempotencyKey, owners: req.owners, path: fillPath(req.resource, req.params), body: req.body });

async function startExecution(d: ApiDeps, t: TrainingRecord, retemplateOf?: string): Promise<void> {
  try {
    const input = ExecutionInput.parse({ training_id: t.id, model: t.model, trainer: t.trainer, template: t.template.name, retemplate_of: retemplateOf });
    await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.stateMachineArn, name: t.id, input: JSON.stringify(input) }));
  } catch (e) {
    // Nothing lost: the training says why it never ran (and leaves the queue).
    await new TrainerQueue(d).release(memberOf(t)).catch(() => undefined);
    await d.store.updateTraining(t.id, { status: 'failed', error: 'the workflow could not be started', completed_at: d.now().toISOString() });
    d.log.error('StartExecution failed', { training_id: t.id, error: (e as Error).name });
    throw new ApiError(503, 'the training could not be started; try again');
  }
}

/**
 * A new version from a finished training's weights on another template, without retraining:
 * the same workflow, whose train step finds the run over (the staged archive is reused while
 * the bucket keeps it).
 */
export async function retemplate(d: ApiDeps, req: ApiRequest, owner: string, name: string): Promise<ApiResponse> {
  const parsed = retemplateSchema(d.config.limits.notes_max_chars).safeParse(parseObject(d, req.body));
  if (!parsed.success) throw badRequest(zodDetail(parsed.error));
  const body = parsed.data;
  const model = `${owner}/${name}`;
  // A model named before the API checked names could not be pushed to: say so before any work.
  if (!MODEL_RE.test(model)) throw badRequest(`the model in the path must be ${MODEL_RULE}`);
  if (model.split('/')[0] === RESERVED_OWNER) throw badRequest(`the owner "${RESERVED_OWNER}" is reserved for the service's template images; choose another owner`);
  checkRepository(d, 'model', model);
  const source = await ownedTraining(d, req, body.training_id);
  if (source.model !== model) throw badRequest(`training_id: training ${source.id} pushed to ${source.model}, not ${model}`);
  // A SageMaker job's run records no output (its archive is staged where the job wrote it): the
  // staged archive is what every re-template reuses anyway.
  const output = source.run.output ?? (source.staged ? `s3://${source.staged.bucket}/${source.staged.key}` : null);
  if (source.status !== 'succeeded' || !output) {
    throw new ApiError(409, `training_id: training ${source.id} is ${source.status}; only a succeeded training's weights can be re-templated`);
  }
  checkEgress(d, 'webhook', body.webhook);
  const template = await resolveTemplate(d.config, body.template_version, d.templates);
  await checkWeightsInput(d.templates, template);
  const id = newTrainingId();
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
    run: { ...source.run, id: runIdFor(id), terminal: 'succeeded', output },
    task_token: null,
    logs_event_at: null,
    webhook_outcome: null,
    retemplate_of: source.id,
  };
  const stored = await idempotently(d.store, idempotencyOf(req), async () => {
    await d.store.createTraining(t);
    // The run is already over (copied from the source), so the train step completes at once with
    // its output and the execution goes straight on to stage, build and push.
    await startExecution(d, t, source.id);
    d.log.info('re-template started', { training_id: id, source: source.id, model, template: template.name });
    return t;
  });
  return { status: 201, body: view(stored, d.publicUrl) };
}
