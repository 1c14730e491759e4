/**
 * S3 (s3rver) and DynamoDB (dynalite) on 127.0.0.1, persisted under the data directory, and
 * the bucket and table the stack creates on AWS.
 */
import { Worker } from 'node:worker_threads';
import { CreateBucketCommand, HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3';
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
import type { TableDefinition } from '../table.ts';
import type { S3Decision } from '../iam/proxy.ts';
import type { S3Request } from '../iam/requests.ts';
import { pollUntil } from './poll.ts';

export interface LocalService {
  url: string;
  close: () => Promise<void>;
}

/** Local S3 also takes access keys made after it started, and local IAM's gate. */
export interface LocalS3 extends LocalService {
  addKeys: (keys: AccessKey[]) => Promise<void>;
  /** From now on every request waits for `decide` (in this thread) before s3rver serves it. */
  gate: (decide: (request: S3Request) => Promise<S3Decision>) => Promise<void>;
}

/** Access keys s3rver accepts (besides its own S3RVER pair). */
export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
}

type HostMessage =
  | { type: 'ready'; port: number }
  | { type: 'closed' }
  | { type: 'keys-added' }
  | { type: 'gated' }
  | { type: 'error'; message: string }
  | { type: 'authorize'; id: number; request: S3Request };

/** A storage service in its own worker thread (see service-host.cjs), on 127.0.0.1. */
async function startHosted(kind: 's3' | 'dynamodb', path: string, keys: AccessKey[] = []): Promise<LocalS3> {
  const worker = new Worker(new URL('./service-host.cjs', import.meta.url), { workerData: { kind, path, keys } });
  let decide: ((request: S3Request) => Promise<S3Decision>) | undefined;
  // Replies to this thread's requests, in order; the gate's questions are answered on their own.
  const waiting: { resolve: (m: HostMessage) => void; reject: (e: Error) => void }[] = [];
  worker.on('message', (m: HostMessage) => {
    if (m.type !== 'authorize') return waiting.shift()?.resolve(m);
    const answer = (decision: S3Decision) => worker.postMessage({ type: 'decision', id: m.id, decision });
    decide!(m.request).then(answer, (e: Error) => answer({ refuse: { status: 500, code: 'InternalError', message: `local IAM failed: ${e.message}` } }));
  });
  const fail = (e: Error) => {
    for (const w of waiting.splice(0)) w.reject(e);
  };
  worker.on('error', fail).on('exit', (code) => fail(new Error(`local ${kind} stopped (exit ${code})`)));
  const next = () => new Promise<HostMessage>((resolve, reject) => waiting.push({ resolve, reject }));
  const ready = await next();
  if (ready.type !== 'ready') {
    await worker.terminate();
    throw new Error(`local ${kind} did not start: ${ready.type === 'error' ? ready.message : ready.type}`);
  }
  const ask = async (message: unknown) => {
    const reply = next();
    worker.postMessage(message);
    return reply;
  };
  return {
    url: `http://127.0.0.1:${ready.port}`,
    close: async () => {
      await ask('close');
      await worker.terminate();
    },
    addKeys: async (added) => void (await ask({ type: 'keys', keys: added })),
    gate: async (fn) => {
      decide = fn;
      await ask({ type: 'gate' });
    },
  };
}

export const startS3 = (directory: string, keys: AccessKey[] = []): Promise<LocalS3> => startHosted('s3', directory, keys);

export const startDynamoDb = (path: string): Promise<LocalService> => startHosted('dynamodb', path);

export async function createBucket(s3: S3Client, bucket: string): Promise<void> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 404) throw err;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  }
}

/**
 * The trainings table as the storage construct defines it (see ../table.ts), on-demand. A
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
