/**
 * Local mode's table comes from the storage construct; a data directory made by an older
 * version (without the `owner` index) is rebuilt with its items, since dynalite cannot add an
 * index to an existing table. Real dynalite on disk.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient, PutItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { createTable, startDynamoDb } from '../../infra/local/aws/storage.ts';
import { testTable } from '../helpers/table.ts';

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
    expect(Table!.GlobalSecondaryIndexes!.map((i) => i.IndexName).sort()).toEqual(['list', 'owner']);
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
