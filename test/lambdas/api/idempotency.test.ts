/**
 * Idempotency-Key on the create routes over real dynalite and the local Step Functions
 * endpoint. Failures are injected into the real SDK calls (a middleware that fails one call),
 * or made real (StartExecution of a state machine that does not exist).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import * as aws from '#shared/aws';
import { errorResponse } from '#shared/errors';
import { logger } from '#shared/log';
import { IDEMPOTENCY } from '#shared/store';
import { route, type ApiDeps, type ApiRequest } from '#lambdas/api/routing';
import { startFixture, type Fixture } from '#test-helpers/aws-local';

let fx: Fixture;
let d: ApiDeps;

beforeAll(async () => {
  fx = await startFixture({ as: 'api' });
  d = {
    ...fx.deps,
    lambda: aws.lambda(),
    stateMachineArn: fx.local.stateMachineArn,
    notifyFunction: 'notify',
    webhookSigningMaster: async () => fx.webhookSecret,
    log: logger('api'),
    templates: { exists: async () => true, inspect: async () => ({ problem: null }) },
    // Inputs are not this test's concern: no schema, so the trainer would check them.
    inputSchemas: { lookup: async () => ({ schema: null, reason: 'not checked in this test' }) },
    openApi: () => ({}),
    predictions: { stateMachineArn: '', s3: async () => fx.deps.s3, schemas: { lookup: async () => ({ schema: null, reason: 'not checked in this test' }) } },
  };
});
afterAll(() => fx?.stop());

const body = (model = 'alice/dog') => ({
  input: { instance_prompt: 'a photo of sks dog', class_prompt: 'a photo of a dog', instance_data: 'http://127.0.0.1:9/dog.zip' },
  trainer_version: 'cog',
  model,
});
const create = async (deps: ApiDeps, key: string, b: unknown = body()) => {
  const r: ApiRequest = { method: 'POST', resource: '/v1/trainings', params: {}, query: {}, body: JSON.stringify(b), owners: ['alice'], idempotencyKey: key };
  try {
    return await route(deps, r);
  } catch (e) {
    const res = errorResponse(e);
    return { status: res.statusCode, body: JSON.parse(res.body) };
  }
};
const newKey = () => `k-${randomBytes(6).toString('hex')}`;
type Training = { id: string; status: string };

/** Fails the next `n` DynamoDB calls named `command` whose input matches, then lets them through. */
function failNext(command: string, match: (input: Record<string, unknown>) => boolean, n = 1) {
  const client = d.store.client;
  const name = `fail-${randomBytes(4).toString('hex')}`;
  let left = n;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === command && left > 0 && match(args.input as Record<string, unknown>)) {
        left--;
        throw Object.assign(new Error('injected: the service is unavailable'), { name: 'InternalServerError', $fault: 'server' });
      }
      return next(args);
    },
    { step: 'initialize', name },
  );
  return () => client.middlewareStack.remove(name);
}

const idempotencyItems = async () =>
  (await d.store.client.send(new QueryCommand({ TableName: d.store.table, KeyConditionExpression: 'pk = :p', ExpressionAttributeValues: { ':p': IDEMPOTENCY.partition } }))).Items ?? [];

describe('Idempotency-Key', () => {
  it('replays the same training for the same key and body, and refuses another body', async () => {
    const key = newKey();
    const first = await create(d, key);
    expect(first.status).toBe(201);
    const again = await create(d, key);
    expect(again).toMatchObject({ status: 201, body: { id: (first.body as Training).id } });
    const other = await create(d, key, body('alice/cat'));
    expect(other).toMatchObject({ status: 409, body: { detail: expect.stringContaining('another request body') } });
  });

  it('(a) a training write that fails leaves the key free: the retry creates the training', async () => {
    const key = newKey();
    const restore = failNext('PutItemCommand', (input) => String((input.Item as { pk?: string })?.pk).startsWith('TRAINING#'));
    const failed = await create(d, key);
    restore();
    expect(failed.status).toBe(500);
    const retry = await create(d, key);
    expect(retry.status).toBe(201);
    const t = retry.body as Training;
    expect(await d.store.getTraining(t.id)).toMatchObject({ status: 'starting' });
  });

  it('(b) a StartExecution that fails (503) is not replayed: the retry starts a new training', async () => {
    const key = newKey();
    const broken = { ...d, stateMachineArn: `${fx.local.stateMachineArn}-missing` };
    const failed = await create(broken, key);
    expect(failed).toMatchObject({ status: 503 });
    const retry = await create(d, key);
    expect(retry.status).toBe(201);
    expect((retry.body as Training).status).toBe('starting');
    // The retry's training runs; the failed one stays failed, saying why.
    const failedOne = (await d.store.listTrainings(['alice'], 5)).results.find((t) => t.status === 'failed' && t.id !== (retry.body as Training).id);
    expect(failedOne?.error).toBe('the workflow could not be started');
    expect(await create(d, key)).toMatchObject({ status: 201, body: { id: (retry.body as Training).id } });
  });

  it('(c) a key expires after 24 h, also while DynamoDB has not yet deleted it', async () => {
    const key = newKey();
    const before = Math.floor(Date.now() / 1000);
    const first = await create(d, key);
    const items = await idempotencyItems();
    const record = items.find((i) => i.status === 'COMPLETED' && JSON.stringify(i.data).includes((first.body as Training).id));
    expect(record).toBeDefined();
    const expiry = record![IDEMPOTENCY.expiryAttribute] as number;
    expect(expiry).toBeGreaterThanOrEqual(before + 24 * 3600);
    expect(expiry).toBeLessThan(before + 24 * 3600 + 60);
    // 24 h later: the item is still there (TTL deletes lazily; dynalite never does).
    await d.store.client.send(
      new UpdateItemCommand({
        TableName: d.store.table,
        Key: { pk: { S: record!.pk as string }, sk: { S: record!.sk as string } },
        UpdateExpression: 'SET #e = :past',
        ExpressionAttributeNames: { '#e': IDEMPOTENCY.expiryAttribute },
        ExpressionAttributeValues: { ':past': { N: String(before - 1) } },
      }),
    );
    const later = await create(d, key, body('alice/cat'));
    expect(later.status).toBe(201);
    expect((later.body as Training).id).not.toBe((first.body as Training).id);
  });

  it('keeps a key that is being processed busy (409), then free when its claim times out', async () => {
    const key = newKey();
    // A create whose Lambda died after its claim: the claim's training write never happens.
    const restore = failNext('DeleteItemCommand', () => true);
    const restorePut = failNext('PutItemCommand', (input) => String((input.Item as { pk?: string })?.pk).startsWith('TRAINING#'));
    const died = await create(d, key);
    restore();
    restorePut();
    expect(died.status).toBe(500);
    expect(await create(d, key)).toMatchObject({ status: 409, body: { detail: expect.stringContaining('still being processed') } });
    // The claim lasts as long as the api Lambda may run; past that, the key is free again.
    const claim = (await idempotencyItems()).find((i) => i.status === 'INPROGRESS');
    expect(claim!.in_progress_expiration).toBeGreaterThan(Date.now());
    await d.store.client.send(
      new UpdateItemCommand({
        TableName: d.store.table,
        Key: { pk: { S: claim!.pk as string }, sk: { S: claim!.sk as string } },
        UpdateExpression: 'SET in_progress_expiration = :past',
        ExpressionAttributeValues: { ':past': { N: String(Date.now() - 1) } },
      }),
    );
    expect((await create(d, key)).status).toBe(201);
  });
});
