import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ConditionalCheckFailedException, DescribeTableCommand, DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { waitingMachine } from '#test-helpers/waiting-machine';
import { pollUntil, startLocalAws, type LocalAws, type LocalAwsOptions } from '#infra/local/aws';
import { testTable } from '#test-helpers/table';

const definition = waitingMachine('Wait for callback', 'starter');

const background: unknown[] = [];
const options = (dataDir: string): LocalAwsOptions => ({
  dataDir,
  table: testTable(),
  definition,
  taskHandlers: { 'Wait for callback': async () => undefined },
  secrets: { 'dreambooth/webhook': 'whsec_local' },
  lambdas: {
    echo: async (payload) => ({ echoed: payload }),
    broken: async () => {
      throw Object.assign(new Error('no weights'), { name: 'BadArchive' });
    },
    notify: async (payload) => {
      background.push(payload);
    },
  },
});

/** SDK clients built from process.env, as the handlers build theirs. */
function clientsFor(local: LocalAws) {
  Object.assign(process.env, local.env);
  return {
    s3: new S3Client({ forcePathStyle: true }),
    dynamodb: new DynamoDBClient({}),
    secrets: new SecretsManagerClient({}),
    lambda: new LambdaClient({}),
  };
}
type Clients = ReturnType<typeof clientsFor>;
const destroy = (c: Clients) => {
  for (const client of Object.values(c)) client.destroy();
};

let dataDir: string;
let local: LocalAws;
let c: Clients;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'local-aws-services-'));
  local = await startLocalAws(options(dataDir));
  c = clientsFor(local);
});

afterAll(async () => {
  if (c) destroy(c);
  await local?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('S3', () => {
  it.each([3, 11])('round-trips a streamed %i MB upload byte for byte', async (mb) => {
    const body = randomBytes(mb * 1024 * 1024);
    const chunks = Array.from({ length: mb * 4 }, (_, i) => body.subarray(i * 256 * 1024, (i + 1) * 256 * 1024));
    const key = `weights/${mb}.zip`;
    await new Upload({ client: c.s3, params: { Bucket: local.bucket, Key: key, Body: Readable.from(chunks) } }).done();

    const got = await c.s3.send(new GetObjectCommand({ Bucket: local.bucket, Key: key }));
    const bytes = await got.Body!.transformToByteArray();
    expect(bytes.length).toBe(body.length);
    expect(sha256(bytes)).toBe(sha256(body));
  });
});

describe('S3 object bodies', () => {
  const body = randomBytes(3 * 1024 * 1024 + 333);
  const key = 'weights/ranges.bin';
  beforeAll(() => new Upload({ client: c.s3, params: { Bucket: local.bucket, Key: key, Body: body } }).done());

  it.each([
    ['the whole object', undefined, body],
    ['a range inside one chunk', 'bytes=10-99', body.subarray(10, 100)],
    ['a range across chunks', `bytes=500000-${2 * 1024 * 1024 + 7}`, body.subarray(500000, 2 * 1024 * 1024 + 8)],
    ['an open-ended range', `bytes=${body.length - 1000}-`, body.subarray(body.length - 1000)],
  ])('answers %s byte for byte, with its length', async (_what, range, expected) => {
    const got = await c.s3.send(new GetObjectCommand({ Bucket: local.bucket, Key: key, Range: range }));
    expect(got.ContentLength).toBe(expected.length);
    if (range) expect(got.ContentRange).toMatch(new RegExp(`/${body.length}$`));
    expect(sha256(await got.Body!.transformToByteArray())).toBe(sha256(expected));
  });

  it('keeps serving after a reader goes away mid-body', async () => {
    const big = randomBytes(24 * 1024 * 1024);
    await new Upload({ client: c.s3, params: { Bucket: local.bucket, Key: 'weights/big.bin', Body: big } }).done();
    const first = await c.s3.send(new GetObjectCommand({ Bucket: local.bucket, Key: 'weights/big.bin' }));
    const stream = first.Body as Readable;
    await new Promise((r) => stream.once('data', r));
    stream.destroy();
    const again = await c.s3.send(new GetObjectCommand({ Bucket: local.bucket, Key: 'weights/big.bin', Range: 'bytes=0-1023' }));
    expect(sha256(await again.Body!.transformToByteArray())).toBe(sha256(big.subarray(0, 1024)));
  });
});

describe('DynamoDB', () => {
  it('has the trainings table with its keys and the list index', async () => {
    const { Table } = await c.dynamodb.send(new DescribeTableCommand({ TableName: local.table }));
    expect(Table?.KeySchema).toEqual([
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ]);
    expect(Table?.GlobalSecondaryIndexes?.[0]).toMatchObject({
      IndexName: 'list',
      KeySchema: [
        { AttributeName: 'listpk', KeyType: 'HASH' },
        { AttributeName: 'listsk', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'ALL' },
    });
  });

  it('honours a conditional write', async () => {
    const put = () =>
      c.dynamodb.send(
        new PutItemCommand({
          TableName: local.table,
          Item: { pk: { S: 'TRAINING#cond' }, sk: { S: 'TRAINING' } },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    await put();
    await expect(put()).rejects.toBeInstanceOf(ConditionalCheckFailedException);
  });
});

describe('Secrets Manager', () => {
  it('answers configured secrets and refuses unknown ones', async () => {
    const out = await c.secrets.send(new GetSecretValueCommand({ SecretId: 'dreambooth/webhook' }));
    expect(out.SecretString).toBe('whsec_local');
    await expect(c.secrets.send(new GetSecretValueCommand({ SecretId: 'nope' }))).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });
  });
});

describe('Lambda', () => {
  const invoke = (FunctionName: string, payload: unknown, InvocationType?: 'Event') =>
    c.lambda.send(new InvokeCommand({ FunctionName, InvocationType, Payload: Buffer.from(JSON.stringify(payload)) }));
  const json = (p: Uint8Array | undefined) => JSON.parse(Buffer.from(p!).toString());

  it('answers a RequestResponse invocation with the result', async () => {
    const out = await invoke('echo', { n: 1 });
    expect(out.StatusCode).toBe(200);
    expect(out.FunctionError).toBeUndefined();
    expect(json(out.Payload)).toEqual({ echoed: { n: 1 } });
  });

  it('reports a thrown error as an Unhandled function error', async () => {
    const out = await invoke('broken', {});
    expect(out.FunctionError).toBe('Unhandled');
    expect(json(out.Payload)).toEqual({ errorType: 'BadArchive', errorMessage: 'no weights' });
  });

  it('accepts an Event invocation with 202 and runs it in the background', async () => {
    const out = await invoke('notify', { training_id: 'abc' }, 'Event');
    expect(out.StatusCode).toBe(202);
    await pollUntil(() => (background.length ? true : undefined), { what: 'the background invocation' });
    expect(background).toEqual([{ training_id: 'abc' }]);
  });

  it('refuses an unknown function', async () => {
    await expect(invoke('missing', {})).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
  });
});
