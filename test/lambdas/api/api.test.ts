/**
 * The API core over the local services: real StartExecution/StopExecution, a real Lambda
 * Invoke of a local `notify`; an SDK mock only for ExecutionLimitExceeded, which the local
 * endpoint cannot produce.
 */
import { ExecutionLimitExceeded, SFNClient, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as aws from '#shared/aws';
import { errorResponse } from '#shared/errors';
import { logger, setLogSink } from '#shared/log';
import { getWebhookSigningMaster } from '#shared/secrets';
import type { TrainingRecord } from '#shared/training';
import { memberOf, TrainerQueue } from '#shared/trainer-queue/index';
import { route, type ApiDeps, type ApiRequest } from '#lambdas/api/routing';
import { LOCAL_SECRET_IDS, newTraining, startFixture, type Fixture } from '#test-helpers/aws-local';
import { pollUntil } from '#infra/local/aws';
import { liveRegistry } from '#lambdas/api/templates';
import { InputSchemas, SCHEMA_TTL_MS } from '#shared/input-schema';
import { sendJson, startServer, type TestServer } from '#test-helpers/aws-local';
import { startFakeReplicate } from '#test-helpers/fake-replicate';
import { matchPath, ROUTES } from '#shared/routes';
import { openApiDocument } from '#infra/openapi';

function resourceOf(path: string): { resource: string; params: Record<string, string> } {
  const m = matchPath(ROUTES.map((r) => r.path), path);
  if (!m) throw new Error(`no route has the path ${path}`);
  return { resource: m.path, params: m.pathParameters };
}

let fx: Fixture;
let d: ApiDeps;
const notified: unknown[] = [];
const logs: string[] = [];

beforeAll(async () => {
  setLogSink((line) => logs.push(line));
  // A replicate trainer in the deployed configuration, so the api's role may read its token
  // (the schema check at submit looks its version up with it).
  fx = await startFixture({
    as: 'api',
    config: { trainers: { demo: { backend: 'demo' }, r8: { backend: 'replicate', api_url: 'http://127.0.0.1:9', api_token_secret: 'r8-secret', replicate_model: 'acme/dreambooth' } } },
    lambdas: { notify: async (payload) => void notified.push(payload) },
    secrets: { 'r8-secret': 'r8-token' },
  });
  d = {
    ...fx.deps,
    lambda: aws.lambda(),
    stateMachineArn: fx.local.stateMachineArn,
    notifyFunction: 'notify',
    webhookSigningMaster: () => getWebhookSigningMaster(fx.deps.secrets, LOCAL_SECRET_IDS.webhookSigning),
    log: logger('api'),
    templates: liveRegistry(fx.deps.config.egress.allow),
    inputSchemas: new InputSchemas(fx.deps.config, fx.deps.secrets),
    openApi: () => openApiDocument(fx.deps.config),
    // Predictions have their own test (predictions.test.ts).
    predictions: { stateMachineArn: '', s3: async () => fx.deps.s3, schemas: { lookup: async () => ({ schema: null, reason: 'not checked in this test' }) } },
  };
});
afterAll(() => fx?.stop());
beforeEach(() => {
  notified.length = 0;
});

/** The request API Gateway would send for a path: the route table's resource and its parameters. */
const req = (method: string, path: string, body: unknown = null, owners = ['alice']): ApiRequest => ({
  method,
  ...resourceOf(path),
  query: {},
  body: body === null ? null : JSON.stringify(body),
  owners,
});
/** What the handler would answer: route's result, or its error mapped as the handler maps it. */
const answer = async (deps: ApiDeps, r: ApiRequest) => {
  try {
    return await route(deps, r);
  } catch (e) {
    const res = errorResponse(e);
    return { status: res.statusCode, body: JSON.parse(res.body) };
  }
};
const seedBody = (model: string) => ({
  input: { instance_prompt: 'a photo of sks dog', class_prompt: 'a photo of a dog', instance_data: 'http://127.0.0.1:9/dog.zip' },
  trainer_version: 'cog',
  model,
  webhook_completed: 'http://127.0.0.1:9/hook?ref=1',
});
const newest = async (model: string) => (await d.store.listTrainings(['*'], 50)).results.find((t) => t.model === model);
const executionArn = (id: string) => `${fx.local.stateMachineArn.replace(':stateMachine:', ':execution:')}:${id}`;

describe('create', () => {
  it('records the training and starts its execution', async () => {
    const out = await answer(d, req('POST', '/v1/trainings', seedBody('alice/dog')));
    expect(out.status).toBe(201);
    const id = (out.body as { id: string }).id;
    expect(await d.store.getTraining(id)).toMatchObject({ status: 'starting', model: 'alice/dog', trainer: 'cog', webhook: 'http://127.0.0.1:9/hook?ref=1' });
    const execution = fx.local.executions.get(executionArn(id));
    expect(JSON.parse(execution!.input)).toEqual({ training_id: id, model: 'alice/dog', trainer: 'cog', template: 'vanilla' });
  });

  it('a StartExecution failure is 503 and the training is recorded failed, not lost', async () => {
    const sfn = new SFNClient({});
    mockClient(sfn)
      .on(StartExecutionCommand)
      .rejects(new ExecutionLimitExceeded({ message: 'Execution limit exceeded', $metadata: { httpStatusCode: 400 } }));
    const out = await answer({ ...d, sfn }, req('POST', '/v1/trainings', seedBody('alice/limits')));

    expect(out).toEqual({ status: 503, body: { detail: 'the training could not be started; try again', status: 503 } });
    const t = await newest('alice/limits');
    expect(t).toMatchObject({ status: 'failed', error: 'the workflow could not be started' });
    expect(t!.completed_at).not.toBeNull();
    expect(logs.some((l) => l.includes('ExecutionLimitExceeded') && l.includes(t!.id))).toBe(true);
  });

  // ECR refuses these repository names: refused at submit, not by the push after the GPU ran.
  it.each(['alice/cjw-', 'alice/a__b', 'alice/a..b', 'alice/a--b', 'alice/-a', 'alice/A'])('a model ECR cannot name (%s) is a 400 that says the rule, and records nothing', async (model) => {
    const out = await answer(d, req('POST', '/v1/trainings', seedBody(model)));
    expect(out.status).toBe(400);
    expect((out.body as { detail: string }).detail).toMatch(/^model: must be owner\/name of lowercase letters and digits, with single "\.", "_" or "-" only between them/);
    expect(await newest(model)).toBeUndefined();
  });

  it('a destination ECR cannot name is a 400 on the Trainings route too, and so is a re-template to it', async () => {
    const trainings = await answer(d, req('POST', '/v1/models/dreambooth/cog/versions/cog/trainings', { destination: 'alice/a__b', input: seedBody('x').input }));
    expect(trainings.status).toBe(400);
    expect((trainings.body as { detail: string }).detail).toMatch(/^destination: must be owner\/name of lowercase letters/);
    const retemplated = await answer(d, req('POST', '/v1/models/alice/a__b/versions', { training_id: 'a'.repeat(26), template_version: 'vanilla' }));
    expect(retemplated).toMatchObject({ status: 400, body: { detail: expect.stringMatching(/^the model in the path must be owner\/name of lowercase/) } });
  });

  it('the owner "templates" (where the service keeps its template images) is a 400 on every route that names a model', async () => {
    const seed = await answer(d, req('POST', '/v1/trainings', seedBody('templates/cjw')));
    expect(seed).toMatchObject({ status: 400, body: { detail: expect.stringMatching(/^model: the owner "templates" is reserved/) } });
    expect(await newest('templates/cjw')).toBeUndefined();
    const trainings = await answer(d, req('POST', '/v1/models/dreambooth/cog/versions/cog/trainings', { destination: 'templates/cjw', input: seedBody('x').input }));
    expect(trainings).toMatchObject({ status: 400, body: { detail: expect.stringMatching(/^destination: the owner "templates" is reserved/) } });
    const retemplated = await answer(d, req('POST', '/v1/models/templates/cjw/versions', { training_id: 'a'.repeat(26), template_version: 'vanilla' }));
    expect(retemplated).toMatchObject({ status: 400, body: { detail: expect.stringMatching(/^the owner "templates" is reserved/) } });
  });

  it('a model whose repository, with the configured prefix, is longer than ECR allows is a 400', async () => {
    const deps = { ...d, config: fx.withConfig({ registry: { type: 'ecr', repository_prefix: 'p'.repeat(100) } }).config };
    const model = `alice/${'n'.repeat(150)}`;
    const out = await answer(deps, req('POST', '/v1/trainings', seedBody(model)));
    expect(out).toMatchObject({ status: 400, body: { detail: expect.stringMatching(/^model: alice\/n+ would be pushed to the repository p{100}\/alice\/n+, which must be 2 to 256 characters/) } });
    expect(await newest(model)).toBeUndefined();
    expect((await answer(d, req('POST', '/v1/trainings', seedBody(model)))).status).toBe(201);
  });

  it("a model of another owner is 404 (as for reads) and records nothing", async () => {
    const out = await answer(d, req('POST', '/v1/trainings', seedBody('bob/dog')));
    expect(out.status).toBe(404);
    expect(await newest('bob/dog')).toBeUndefined();
  });
});

describe('re-template', () => {
  it('of a SageMaker-trained training (its run records no output: the archive stays where its job left it) is a 201 whose run is over with that archive', async () => {
    // The api reads only the record: no sagemaker trainer needs to be configured for it.
    const source = await newTraining(d, { status: 'succeeded', trainer: 'gpu', trainer_backend: 'sagemaker', model: 'alice/gpu' });
    const key = `sagemaker/${source.id}/output/db-0123abcd-${source.id}/output/model/output.zip`;
    await d.store.updateTraining(source.id, { 'run.started': true, staged: { bucket: d.bucket, key, size: 1000 } });

    const out = await answer(d, req('POST', '/v1/models/alice/gpu/versions', { training_id: source.id, template_version: 'vanilla', notes: 'again' }));
    expect(out.status, JSON.stringify(out.body)).toBe(201);
    const id = (out.body as { id: string }).id;
    // The workflow's train step finds the run over and goes on with its output: no new job.
    expect((await d.store.getTraining(id))!.run).toMatchObject({ started: true, terminal: 'succeeded', output: `s3://${d.bucket}/${key}` });
    expect(JSON.parse(fx.local.executions.get(executionArn(id))!.input)).toMatchObject({ training_id: id, trainer: 'gpu', retemplate_of: source.id });
  });
});

describe('cancel', () => {
  it('of a finished training is a no-op 200', async () => {
    const t = await newTraining(d, { status: 'succeeded', version: 'd'.repeat(64), completed_at: '2030-01-01T00:00:00.000Z' });
    const before = await d.store.getTraining(t.id);
    const out = await answer(d, req('POST', `/v1/trainings/${t.id}/cancel`));

    expect(out.status).toBe(200);
    expect(out.body).toMatchObject({ id: t.id, status: 'succeeded' });
    expect(await d.store.getTraining(t.id)).toEqual(before);
    expect(notified).toEqual([]);
  });

  it('of a running training stops its execution and sends the webhook', async () => {
    const t = await newTraining(d, { status: 'processing', task_token: 'secret-token' });
    await d.sfn.send(new StartExecutionCommand({ stateMachineArn: d.stateMachineArn, name: t.id, input: '{}' }));
    const out = await answer(d, req('POST', `/v1/trainings/${t.id}/cancel`));

    expect(out.status).toBe(200);
    expect(out.body).toMatchObject({ status: 'canceled' });
    expect(await d.store.getTraining(t.id)).toMatchObject({ status: 'canceled', cancel_requested: true, task_token: null });
    expect((await fx.local.executions.whenDone(executionArn(t.id))).status).toBe('ABORTED');
    expect(await pollUntil(() => (notified.length ? notified : undefined), { what: 'the notify invocation' })).toEqual([
      { training_id: t.id, event: 'completed' },
    ]);
  });
});

describe('the trainer queue', () => {
  it('GET /v1/trainers shows capacity, busy slots and queue length; cancel while queued leaves the queue at once', async () => {
    // A trainer of its own: the trainings the other tests create wait in cog's queue.
    const solo = { ...d, ...fx.withConfig({ trainers: { solo: { backend: 'cog', url: 'http://127.0.0.1:9' } } }) } as ApiDeps;
    const queue = new TrainerQueue(solo);
    const holder = await newTraining(solo, { trainer: 'solo' });
    const queued = await newTraining(solo, { trainer: 'solo' });
    const a = await fx.waitingTask();
    const b = await fx.waitingTask();
    await queue.acquire(memberOf(holder), a.token, a.executionArn);
    expect((await queue.acquire(memberOf(queued), b.token, b.executionArn)).ahead).toBe(0);
    const trainers = async () => (await answer(solo, req('GET', '/v1/trainers'))).body.results.find((t: { name: string }) => t.name === 'solo');
    expect(await trainers()).toMatchObject({ backend: 'cog', capacity: 1, busy: 1, queue_length: 1 });

    const out = await answer(solo, req('POST', `/v1/trainings/${queued.id}/cancel`));
    expect(out.body).toMatchObject({ status: 'canceled' });
    expect(await trainers()).toMatchObject({ capacity: 1, busy: 1, queue_length: 0 });
    expect(await pollUntil(() => (notified.length ? notified : undefined), { what: 'the notify invocation' })).toEqual([
      { training_id: queued.id, event: 'completed' },
    ]);
    // Canceling the holder frees its slot.
    await answer(solo, req('POST', `/v1/trainings/${holder.id}/cancel`));
    expect(await trainers()).toMatchObject({ capacity: 1, busy: 0, queue_length: 0 });
    for (const x of [a, b]) await d.sfn.send(new StopExecutionCommand({ executionArn: x.executionArn }));
  });
});

describe("another owner's training", () => {
  let t: TrainingRecord;
  beforeAll(async () => {
    t = await newTraining(d, { status: 'processing', owner: 'bob', model: 'bob/cat' });
  });

  it.each([
    ['GET', ''],
    ['POST', '/cancel'],
  ])('%s is 404, not 403', async (method, suffix) => {
    const out = await answer(d, req(method, `/v1/trainings/${t.id}${suffix}`));
    expect(out).toEqual({ status: 404, body: { detail: `training ${t.id} not found`, status: 404 } });
    expect((await d.store.getTraining(t.id))!.status).toBe('processing');
  });

  it('is visible to its owner', async () => {
    expect(await answer(d, req('GET', `/v1/trainings/${t.id}`, null, ['bob']))).toMatchObject({ status: 200, body: { id: t.id } });
  });
});

/** A Cog trainer's /openapi.json, shaped as Cog 0.9 writes it (enums as allOf $refs). */
const COG_OPENAPI = {
  openapi: '3.0.2',
  components: {
    schemas: {
      Input: {
        type: 'object',
        required: ['instance_prompt', 'class_prompt'],
        properties: {
          instance_prompt: { type: 'string' },
          class_prompt: { type: 'string' },
          instance_data: { type: 'string', format: 'uri' },
          max_train_steps: { type: 'integer', minimum: 1, maximum: 5000 },
          scheduler: { allOf: [{ $ref: '#/components/schemas/scheduler' }], default: 'DDIM' },
        },
        additionalProperties: false,
      },
      scheduler: { title: 'scheduler', type: 'string', enum: ['DDIM', 'PNDM'] },
    },
  },
};

describe('inputs checked at submit', () => {
  let cog: TestServer;
  let clock = 0;
  let schemaStatus = 200;
  let deps: ApiDeps;
  const openapiHits = () => cog.requests.filter((r) => r.url === '/openapi.json').length;
  const seed = (input: Record<string, unknown>, trainer_version = 'schema-cog') => ({
    input: { instance_prompt: 'a photo of sks dog', class_prompt: 'a photo of a dog', ...input },
    trainer_version,
    model: 'alice/checked',
  });

  beforeAll(async () => {
    cog = await startServer((r, res) => (r.url === '/openapi.json' && schemaStatus === 200 ? sendJson(res, 200, COG_OPENAPI) : sendJson(res, schemaStatus, { detail: 'Not Found' })));
    const config = fx.withConfig({ trainers: { 'schema-cog': { backend: 'cog', url: cog.url, owner: 'acme', name: 'checked' }, demo: { backend: 'demo' } } }).config;
    deps = { ...d, config, inputSchemas: new InputSchemas(config, fx.deps.secrets, () => clock) };
  });
  afterAll(() => cog?.close());

  it.each([
    ['a missing required field', { class_prompt: undefined }, /^input\.class_prompt: field required/],
    ['a wrong type', { max_train_steps: '20' }, /^input\.max_train_steps: value type "string" is invalid\. Expected "integer"/],
    ['a value above the maximum', { max_train_steps: 10_000 }, /^input\.max_train_steps: .*5000/],
    ['a value below the minimum', { max_train_steps: 0 }, /^input\.max_train_steps: .*1/],
    ['a value outside the enum (a $ref)', { scheduler: 'EULER' }, /^input\.scheduler: .*"DDIM","PNDM"/],
  ])('%s is a 422 naming the field, and nothing is recorded', async (_what, input, detail) => {
    const before = (await d.store.listTrainings(['*'], 100)).results.length;
    const out = await answer(deps, req('POST', '/v1/trainings', seed(input)));
    expect(out.status, JSON.stringify(out.body)).toBe(422);
    expect(out.body).toMatchObject({ status: 422, detail: expect.stringMatching(detail) });
    expect((out.body as { detail: string }).detail).toContain(`${cog.url}/openapi.json`);
    expect((await d.store.listTrainings(['*'], 100)).results.length).toBe(before);
  });

  it('lets fields the schema does not know pass, and caches the schema per trainer until it is refreshed', async () => {
    const hits = openapiHits();
    expect((await answer(deps, req('POST', '/v1/trainings', seed({ max_train_steps: 20, my_extra: true })))).status).toBe(201);
    expect((await answer(deps, req('POST', '/v1/trainings', seed({ max_train_steps: 30 })))).status).toBe(201);
    expect(openapiHits() - hits).toBeLessThanOrEqual(1);
    clock += SCHEMA_TTL_MS + 1;
    expect((await answer(deps, req('POST', '/v1/trainings', seed({})))).status).toBe(201);
    expect(openapiHits() - hits).toBeGreaterThanOrEqual(1);
    const after = openapiHits();
    await answer(deps, req('POST', '/v1/trainings', seed({})));
    expect(openapiHits()).toBe(after);
  });

  it('checks the Trainings-API route too', async () => {
    const out = await answer(deps, req('POST', '/v1/models/acme/checked/versions/schema-cog/trainings', { destination: 'alice/checked', input: { instance_prompt: 'p' } }));
    expect(out.status).toBe(422);
    expect((out.body as { detail: string }).detail).toMatch(/^input\.class_prompt: field required/);
  });

  it("checks the demo trainer against its own schema (the seed request without class_prompt)", async () => {
    const out = await answer(deps, req('POST', '/v1/trainings', { ...seed({ class_prompt: undefined, instance_data: 'http://127.0.0.1:9/x.zip' }, 'demo') }));
    expect(out.status).toBe(422);
    expect((out.body as { detail: string }).detail).toMatch(/^input\.class_prompt: field required .*the demo trainer/);
  });

  it('proceeds when the schema cannot be had, and logs why', async () => {
    schemaStatus = 404;
    clock += SCHEMA_TTL_MS + 1;
    logs.length = 0;
    const out = await answer(deps, req('POST', '/v1/trainings', seed({ class_prompt: undefined })));
    expect(out.status).toBe(201);
    const line = logs.map((l) => JSON.parse(l)).find((l) => l.message === 'trainer input schema unavailable; inputs are left to the trainer');
    expect(line).toMatchObject({ trainer: 'schema-cog', reason: `the Cog trainer's ${cog.url}/openapi.json answered HTTP 404` });
    schemaStatus = 200;
    clock += SCHEMA_TTL_MS + 1;
  });

  it('GET /v1/trainers/{owner}/{name} shows the schema; an unknown trainer is 404', async () => {
    const out = await answer(deps, req('GET', '/v1/trainers/acme/checked'));
    expect(out.status).toBe(200);
    expect(out.body).toMatchObject({ owner: 'acme', name: 'checked', key: 'schema-cog', input_schema: { required: ['instance_prompt', 'class_prompt'] } });
    expect((out.body as { input_schema: Record<string, unknown> }).input_schema.additionalProperties).toBeUndefined();
    expect((await answer(deps, req('GET', '/v1/trainers/acme/nope'))).status).toBe(404);
  });

  it("checks a Replicate version's openapi_schema (replicate_model names the model)", async () => {
    const fake = await startFakeReplicate({ token: 'r8-token' });
    try {
      fake.versions.set('acme/dreambooth', { id: 'f'.repeat(64), openapi_schema: COG_OPENAPI });
      const config = fx.withConfig({ trainers: { r8: { backend: 'replicate', api_url: fake.url, api_token_secret: 'r8-secret', replicate_model: 'acme/dreambooth' } } }).config;
      const rd = { ...d, config, inputSchemas: new InputSchemas(config, fx.deps.secrets) };
      const out = await answer(rd, req('POST', '/v1/trainings', seed({ scheduler: 'EULER' }, 'f'.repeat(64))));
      expect(out.status, JSON.stringify(out.body)).toBe(422);
      expect((out.body as { detail: string }).detail).toMatch(/^input\.scheduler: .* \(the input schema of Replicate version acme\/dreambooth:f{64}/);
      expect(fake.calls.find((c) => c.path === `/v1/models/acme/dreambooth/versions/${'f'.repeat(64)}`)?.authorization).toBe('Bearer r8-token');
    } finally {
      await fake.close();
    }
  });
});
