/**
 * Local mode's table comes from the storage construct; a data directory made by an older
 * version (without the `owner` index) is rebuilt with its items, since dynalite cannot add an
 * index to an existing table. Items are refused past DynamoDB's 400 KB as DynamoDB counts them
 * (UTF-8). Real dynalite on disk.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient, PutItemCommand, QueryCommand, UpdateItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { createTable, startDynamoDb } from '#infra/local/dynamodb/index';
import { testTable } from '#test-helpers/table';

const dir = mkdtempSync(join(tmpdir(), 'table-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('adds the indexes the construct defines to an older table and keeps its items', async () => {
  const dynamo = await startDynamoDb(dir);
  const db = new DynamoDBClient({ endpoint: dynamo.url, region: 'us-east-1', credentials: { accessKeyId: 'l', secretAccessKey: 'l' } });
  try {
    const def = testTable();
    const old = { ...def, GlobalSecondaryIndexes: def.GlobalSecondaryIndexes!.filter((i) => i.IndexName === 'list') };
    await db.send(new CreateTableCommand({ TableName: 'trainings', BillingMode: 'PAY_PER_REQUEST', ...old }));
    const item = { pk: { S: 'TRAINING#x' }, sk: { S: 'TRAINING' }, listpk: { S: 'TRAININGS' }, listsk: { S: '2026#x' }, owner: { S: 'alice' } };
    await db.send(new PutItemCommand({ TableName: 'trainings', Item: item }));

    await createTable(db, 'trainings', def);
    const { Table } = await db.send(new DescribeTableCommand({ TableName: 'trainings' }));
    expect(Table!.GlobalSecondaryIndexes!.map((i) => i.IndexName).sort()).toEqual(def.GlobalSecondaryIndexes!.map((i) => i.IndexName).sort());
    const byOwner = await db.send(
      new QueryCommand({ TableName: 'trainings', IndexName: 'owner', KeyConditionExpression: '#o = :o', ExpressionAttributeNames: { '#o': 'owner' }, ExpressionAttributeValues: { ':o': { S: 'alice' } } }),
    );
    expect(byOwner.Items).toEqual([item]);
    // Up to date: nothing to do a second time.
    await createTable(db, 'trainings', def);
  } finally {
    db.destroy();
    await dynamo.close();
  }
});

describe("DynamoDB's 400 KB item limit", () => {
  const LIMIT = 400 * 1024;
  /** pk "TRAINING#x" and sk "TRAINING": 2 + 10 + 2 + 8 bytes; `logs` adds 4 bytes of name. */
  const KEY_BYTES = 22;
  const item = (logs: string): Record<string, AttributeValue> => ({ pk: { S: 'TRAINING#x' }, sk: { S: 'TRAINING' }, logs: { S: logs } });

  async function withTable(run: (db: DynamoDBClient) => Promise<void>) {
    const dynamo = await startDynamoDb(mkdtempSync(join(dir, 'limit-')));
    const db = new DynamoDBClient({ endpoint: dynamo.url, region: 'us-east-1', credentials: { accessKeyId: 'l', secretAccessKey: 'l' } });
    try {
      await createTable(db, 'trainings', testTable());
      await run(db);
    } finally {
      db.destroy();
      await dynamo.close();
    }
  }
  const put = (db: DynamoDBClient, logs: string) => db.send(new PutItemCommand({ TableName: 'trainings', Item: item(logs) }));
  const tooLarge = { name: 'ValidationException', message: expect.stringMatching(/^Item size( to update)? has exceeded the maximum allowed size$/) };

  it('takes an item of exactly 400 KB and refuses one of 401 KB', async () => {
    await withTable(async (db) => {
      await put(db, 'x'.repeat(LIMIT - KEY_BYTES - 4));
      await expect(put(db, 'x'.repeat(LIMIT - KEY_BYTES - 3))).rejects.toMatchObject(tooLarge);
      await expect(put(db, 'x'.repeat(401 * 1024))).rejects.toMatchObject(tooLarge);
    });
  });

  it('counts strings in UTF-8 bytes, as DynamoDB does, not in characters', async () => {
    // 150,000 characters, 450,000 bytes: DynamoDB refuses it.
    const bars = '█'.repeat(150_000);
    await withTable(async (db) => {
      await expect(put(db, bars)).rejects.toMatchObject(tooLarge);
    });
  });

  it('refuses an update that makes the item larger than 400 KB', async () => {
    await withTable(async (db) => {
      await put(db, 'step 1\n');
      const update = (logs: string) =>
        db.send(
          new UpdateItemCommand({
            TableName: 'trainings',
            Key: { pk: { S: 'TRAINING#x' }, sk: { S: 'TRAINING' } },
            UpdateExpression: 'SET #l = :l',
            ExpressionAttributeNames: { '#l': 'logs' },
            ExpressionAttributeValues: { ':l': { S: logs } },
          }),
        );
      await expect(update('é'.repeat(205_000))).rejects.toMatchObject(tooLarge);
      await update('é'.repeat(100_000));
    });
  });
});
