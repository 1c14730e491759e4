/**
 * The API core over the local services: real StartExecution/StopExecution, a real Lambda
 * Invoke of a local `notify`; an SDK mock only for ExecutionLimitExceeded, which the local
 * endpoint cannot produce.
 */
import { ExecutionLimitExceeded, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as aws from '#shared/aws';
import { errorResponse } from '#shared/errors';
import { logger, setLogSink } from '#shared/log';
import { getWebhookSecret } from '#shared/secrets';
import type { TrainingRecord } from '#shared/training';
import { route, type ApiDeps, type ApiRequest } from '../../lambdas/api/core.ts';
import { newTraining, SECRET_IDS, startFixture, type Fixture } from '../helpers/aws-local.ts';
import { pollUntil } from '../../infra/local/aws/index.ts';
import { liveRegistry } from '../../lambdas/api/templates.ts';

let fx: Fixture;
let d: ApiDeps;
const notified: unknown[] = [];
const logs: string[] = [];

beforeAll(async () => {
  setLogSink((line) => logs.push(line));
  fx = await startFixture({ lambdas: { notify: async (payload) => void notified.push(payload) } });
  d = {
    ...fx.deps,
    lambda: aws.lambda(),
    stateMachineArn: fx.local.stateMachineArn,
    notifyFunction: 'notify',
    webhookSecret: () => getWebhookSecret(fx.deps.secrets, SECRET_IDS.webhook),
    log: logger('api'),
    templates: liveRegistry(fx.deps.config.egress.allow),
  };
});
afterAll(() => fx?.stop());
beforeEach(() => {
  notified.length = 0;
});

const req = (method: string, path: string, body: unknown = null, owners = ['alice']): ApiRequest => ({
  method,
  path,
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
const newest = async (model: string) => (await d.store.listTrainings(50)).results.find((t) => t.model === model);
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

  it("a model of another owner is 404 (as for reads) and records nothing", async () => {
    const out = await answer(d, req('POST', '/v1/trainings', seedBody('bob/dog')));
    expect(out.status).toBe(404);
    expect(await newest('bob/dog')).toBeUndefined();
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
