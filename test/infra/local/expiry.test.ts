/**
 * Local mode applies the bucket's lifecycle expirations and the table's time to live from the
 * synthesized template (neither s3rver nor dynalite does): a prediction's objects go after
 * retention.prediction_days, a staged archive after retention.staged_archive_days, and an item
 * whose `expiration` has passed is deleted. Real s3rver and dynalite; time moves by passing `now`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '#shared/config';
import { synthesize } from '#infra/local/cloudformation/synthesize';
import { createTable, startDynamoDb } from '#infra/local/dynamodb/index';
import { expireNow, expiryRulesOf } from '#infra/local/expiry';
import { createBucket, startS3 } from '#infra/local/s3';
import { testTable } from '#test-helpers/table';
import { readCdkJson } from '#test-helpers/paths';

const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'expiry-'));
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
let servers: { close(): Promise<void> }[] = [];
let s3: S3Client;
let db: DynamoDBDocumentClient;

beforeAll(async () => {
  const s3Server = await startS3(join(dir, 's3'));
  const dynamo = await startDynamoDb(join(dir, 'dynamodb'));
  servers = [s3Server, dynamo];
  s3 = new S3Client({ region: 'us-east-1', endpoint: s3Server.url, forcePathStyle: true, credentials });
  const raw = new DynamoDBClient({ region: 'us-east-1', endpoint: dynamo.url, credentials });
  db = DynamoDBDocumentClient.from(raw);
  await createBucket(s3, 'data');
  await createTable(raw, 'table', testTable());
});
afterAll(async () => {
  s3?.destroy();
  db?.destroy();
  for (const s of servers) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

const rules = () => {
  const cdk = readCdkJson() as { context: { dreambooth: Record<string, unknown> } };
  const config = parseConfig({ ...cdk.context.dreambooth, retention: { prediction_days: 1, staged_archive_days: 7 } });
  return expiryRulesOf(synthesize(config).template);
};

it("reads the data bucket's prefixed expirations and the table's TTL attribute from the template", () => {
  const r = rules();
  expect(r.objects).toContainEqual({ prefix: 'predictions/', days: 1 });
  expect(r.objects).toContainEqual({ prefix: 'staged/', days: 7 });
  expect(r.ttlAttribute).toBe('expiration');
});

it('deletes what is past its retention and keeps the rest', async () => {
  for (const Key of ['predictions/p1/request.json', 'predictions/p1/files/0.png', 'staged/t1/weights.tar', 'elsewhere/keep.txt']) {
    await s3.send(new PutObjectCommand({ Bucket: 'data', Key, Body: 'x' }));
  }
  const now = Date.now();
  await db.send(new PutCommand({ TableName: 'table', Item: { pk: 'PREDICTION#p1', sk: 'PREDICTION', expiration: Math.floor(now / 1000) + 86_400 } }));
  await db.send(new PutCommand({ TableName: 'table', Item: { pk: 'TRAINING#t1', sk: 'TRAINING' } }));
  const targets = { s3, db, bucket: 'data', table: 'table' };

  // Nothing has expired yet.
  expect(await expireNow(rules(), targets, now)).toEqual({ objects: 0, items: 0 });
  // Two days on: the prediction's objects and record are gone; the staged archive (7 days) and the rest stay.
  expect(await expireNow(rules(), targets, now + 2 * DAY)).toEqual({ objects: 2, items: 1 });
  const left = await s3.send(new ListObjectsV2Command({ Bucket: 'data' }));
  expect((left.Contents ?? []).map((o) => o.Key).sort()).toEqual(['elsewhere/keep.txt', 'staged/t1/weights.tar']);
  expect((await db.send(new GetCommand({ TableName: 'table', Key: { pk: 'PREDICTION#p1', sk: 'PREDICTION' } }))).Item).toBeUndefined();
  expect((await db.send(new GetCommand({ TableName: 'table', Key: { pk: 'TRAINING#t1', sk: 'TRAINING' } }))).Item).toBeDefined();
});
