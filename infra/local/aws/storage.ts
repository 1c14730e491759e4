/**
 * S3 (s3rver) and DynamoDB (dynalite) on 127.0.0.1, persisted under the data directory, and
 * the bucket and table the stack creates on AWS.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient, ResourceNotFoundException } from '@aws-sdk/client-dynamodb';
import { closeServer } from './endpoint.ts';
import { pollUntil } from './poll.ts';

const require = createRequire(import.meta.url);

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverClass = new (opts: { address: string; port: number; directory: string; silent: boolean }) => S3rverInstance;
type Dynalite = (opts: { path: string; createTableMs: number; deleteTableMs: number; updateTableMs: number }) => Server;

export interface LocalService {
  url: string;
  close: () => Promise<void>;
}

export async function startS3(directory: string): Promise<LocalService> {
  const S3rver = require('s3rver') as S3rverClass;
  const s3rver = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true });
  const { port } = await s3rver.run();
  const server = (s3rver as unknown as { httpServer: Server }).httpServer;
  return { url: `http://127.0.0.1:${port}`, close: () => closeServer(server) };
}

export async function startDynamoDb(path: string): Promise<LocalService> {
  const dynalite = require('dynalite') as Dynalite;
  // No artificial CREATING delay: local start-up should not wait for it.
  const server = dynalite({ path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => closeServer(server) };
}

export async function createBucket(s3: S3Client, bucket: string): Promise<void> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 404) throw err;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  }
}

/** The trainings table as the storage construct defines it (keys, GSI `list`, on-demand). */
export async function createTable(dynamodb: DynamoDBClient, table: string): Promise<void> {
  try {
    await dynamodb.send(new DescribeTableCommand({ TableName: table }));
    return;
  } catch (err) {
    if (!(err instanceof ResourceNotFoundException)) throw err;
  }
  await dynamodb.send(
    new CreateTableCommand({
      TableName: table,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
        { AttributeName: 'listpk', AttributeType: 'S' },
        { AttributeName: 'listsk', AttributeType: 'S' },
      ],
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: 'list',
          KeySchema: [
            { AttributeName: 'listpk', KeyType: 'HASH' },
            { AttributeName: 'listsk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
      ],
    }),
  );
  await pollUntil(
    async () => {
      const { Table } = await dynamodb.send(new DescribeTableCommand({ TableName: table }));
      return Table?.TableStatus === 'ACTIVE' ? true : undefined;
    },
    { what: `table ${table} to become ACTIVE` },
  );
}
