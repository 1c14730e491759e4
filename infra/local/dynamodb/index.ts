/**
 * DynamoDB in local mode: dynalite in its worker thread (../storage-host.ts), with DynamoDB's own
 * count of an item's size (./item-size.cjs), and the trainings table the stack creates on AWS.
 */
import {
  BatchWriteItemCommand,
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  ResourceNotFoundException,
  ScanCommand,
  type AttributeValue,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import type { TableDefinition } from '../cloudformation/table.ts';
import { pollUntil } from '../poll.ts';
import { startHosted, type LocalService } from '../storage-host.ts';

export const startDynamoDb = (path: string): Promise<LocalService> => startHosted('dynamodb', path);

/**
 * The trainings table as the storage construct defines it (see ../cloudformation/table.ts), on-demand. A
 * table from an older version that lacks an index is rebuilt with its items: dynalite cannot
 * add an index to an existing table.
 */
export async function createTable(dynamodb: DynamoDBClient, table: string, definition: TableDefinition): Promise<void> {
  let existing: string[] | null = null;
  try {
    const { Table } = await dynamodb.send(new DescribeTableCommand({ TableName: table }));
    existing = (Table?.GlobalSecondaryIndexes ?? []).map((i) => i.IndexName!);
  } catch (err) {
    if (!(err instanceof ResourceNotFoundException)) throw err;
  }
  const wanted = (definition.GlobalSecondaryIndexes ?? []).map((i) => i.IndexName!);
  if (existing && wanted.every((i) => existing.includes(i))) return;
  const items = existing ? await scanAll(dynamodb, table) : [];
  if (existing) {
    await dynamodb.send(new DeleteTableCommand({ TableName: table }));
    await waitFor(dynamodb, table, 'gone');
  }
  await dynamodb.send(new CreateTableCommand({ TableName: table, BillingMode: 'PAY_PER_REQUEST', ...definition }));
  await waitFor(dynamodb, table, 'ACTIVE');
  for (let i = 0; i < items.length; i += 25) {
    const batch = items.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } }));
    let pending: Record<string, WriteRequest[]> | undefined = { [table]: batch };
    while (pending && Object.keys(pending).length) pending = (await dynamodb.send(new BatchWriteItemCommand({ RequestItems: pending }))).UnprocessedItems;
  }
}

async function scanAll(dynamodb: DynamoDBClient, table: string): Promise<Record<string, AttributeValue>[]> {
  const items: Record<string, AttributeValue>[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const out = await dynamodb.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
    items.push(...(out.Items ?? []));
    start = out.LastEvaluatedKey;
  } while (start);
  return items;
}

async function waitFor(dynamodb: DynamoDBClient, table: string, state: 'ACTIVE' | 'gone'): Promise<void> {
  await pollUntil(
    async () => {
      try {
        const { Table } = await dynamodb.send(new DescribeTableCommand({ TableName: table }));
        return state === 'ACTIVE' && Table?.TableStatus === 'ACTIVE' ? true : undefined;
      } catch (err) {
        if (state === 'gone' && err instanceof ResourceNotFoundException) return true;
        throw err;
      }
    },
    { what: `table ${table} to be ${state}` },
  );
}
