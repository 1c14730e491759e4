/**
 * DynamoDB writes an item and its index entries at once; dynalite does not (index entries first,
 * the item after). Local mode killed between the two left a list showing one version twice (the
 * durable e2e caught it). A store that was not closed cleanly has its indexes rebuilt from its
 * items before it serves. Here the crash's leftovers are written into a real store on disk with
 * dynalite's own key arithmetic, as a kill between the two writes leaves them.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { DynamoDBClient, PutItemCommand, QueryCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { Level } from 'level';
import { createTable, startDynamoDb } from '#infra/local/dynamodb/index';
import { testTable } from '#test-helpers/table';

const dynaliteDb = createRequire(import.meta.url)('dynalite/db') as {
  getIndexActions: (
    indexes: unknown[],
    existing: unknown,
    item: unknown,
    table: unknown,
  ) => { puts: { index: string; key: string; item: unknown }[] };
};
const root = mkdtempSync(join(tmpdir(), 'recovery-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const version = (id: string, at: string): Record<string, AttributeValue> => ({
  pk: { S: `MODEL#acme/m` },
  sk: { S: `VERSION#${id}` },
  listpk: { S: 'VERSIONS#acme/m' },
  listsk: { S: `${at}#${id}` },
});

async function withDb<T>(dir: string, run: (db: DynamoDBClient) => Promise<T>): Promise<T> {
  const dynamo = await startDynamoDb(dir);
  const db = new DynamoDBClient({ endpoint: dynamo.url, region: 'us-east-1', credentials: { accessKeyId: 'l', secretAccessKey: 'l' } });
  try {
    return await run(db);
  } finally {
    db.destroy();
    await dynamo.close();
  }
}

const listed = (db: DynamoDBClient) =>
  db
    .send(
      new QueryCommand({
        TableName: 'trainings',
        IndexName: 'list',
        KeyConditionExpression: 'listpk = :p',
        ExpressionAttributeValues: { ':p': { S: 'VERSIONS#acme/m' } },
      }),
    )
    .then((out) => (out.Items ?? []).map((i) => i.listsk!.S));

/** A store holding versions a and b, closed cleanly, then given a crash's leftovers on disk. */
async function crashedStore(dir: string) {
  await withDb(dir, async (db) => {
    // Waits for the table to be ACTIVE (dynalite answers CreateTable while it is CREATING).
    await createTable(db, 'trainings', testTable());
    await db.send(new PutItemCommand({ TableName: 'trainings', Item: version('a', '2026-01') }));
    await db.send(new PutItemCommand({ TableName: 'trainings', Item: version('b', '2026-02') }));
  });
  expect(existsSync(`${dir}.open`)).toBe(false);
  const level = new Level<string, any>(dir, { valueEncoding: 'json' });
  const table = await level.get('table~trainings');
  const entry = (item: Record<string, AttributeValue>) =>
    dynaliteDb.getIndexActions(table.GlobalSecondaryIndexes, null, item, table).puts.find((p) => p.index === 'list')!;
  // Version a written again later: its new index entry landed, the item did not.
  const orphan = entry(version('a', '2026-03'));
  await level.put(`index-global~trainings~list~${orphan.key}`, orphan.item);
  // Version b's entry removed (an update's delete landed, its put did not).
  await level.del(`index-global~trainings~list~${entry(version('b', '2026-02')).key}`);
  await level.close();
}

it('rebuilds the indexes of a store that was not closed cleanly, from its items', async () => {
  const dir = join(root, 'crashed');
  await crashedStore(dir);
  writeFileSync(`${dir}.open`, 'a run that was killed\n');
  await withDb(dir, async (db) => expect(await listed(db)).toEqual(['2026-01#a', '2026-02#b']));
  expect(existsSync(`${dir}.open`)).toBe(false);
});

it('marks the store open while it serves, and serves a cleanly closed store as it is', async () => {
  const dir = join(root, 'clean');
  await crashedStore(dir);
  // No marker: the store was closed cleanly, nothing is rebuilt (the leftovers were planted after).
  await withDb(dir, async (db) => {
    expect(existsSync(`${dir}.open`)).toBe(true);
    expect(await listed(db)).toEqual(['2026-01#a', '2026-03#a']);
  });
  expect(existsSync(`${dir}.open`)).toBe(false);
});
