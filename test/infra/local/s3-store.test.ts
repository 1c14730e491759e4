/**
 * Local S3 keeps objects as S3 does (infra/local/s3-store.cjs): a CopyObject shares the source's
 * bytes (one file, two names) rather than copying them, and since no object file is ever written
 * in place, a later PUT over either key leaves the other as it was; a GET started before a PUT
 * of the same key reads the old object whole. Real s3rver in its worker, through the SDK.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { CopyObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createBucket, startS3, type LocalS3 } from '#infra/local/s3';

const dir = mkdtempSync(join(tmpdir(), 's3-store-'));
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
let server: LocalS3;
let s3: S3Client;

beforeAll(async () => {
  server = await startS3(join(dir, 's3'));
  s3 = new S3Client({ region: 'us-east-1', endpoint: server.url, forcePathStyle: true, credentials });
  await createBucket(s3, 'data');
  await createBucket(s3, 'other');
});
afterAll(async () => {
  s3?.destroy();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const put = (Key: string, Body: Buffer | string, Bucket = 'data') => s3.send(new PutObjectCommand({ Bucket, Key, Body }));
const text = async (Key: string, Bucket = 'data') => (await s3.send(new GetObjectCommand({ Bucket, Key }))).Body!.transformToString();
/** The object's file in s3rver's directory (s3rver's naming: `<key>._S3rver_object`). */
const file = (bucket: string, key: string) => join(dir, 's3', bucket, `${key}._S3rver_object`);

it('copies an object by sharing its file, with its metadata, and answers the copy like the source', async () => {
  await s3.send(new PutObjectCommand({ Bucket: 'data', Key: 'jobs/out.zip', Body: 'trained weights', ContentType: 'application/zip', Metadata: { run: '1' } }));
  await s3.send(new CopyObjectCommand({ Bucket: 'data', Key: 'staged/out.zip', CopySource: 'data/jobs/out.zip' }));
  expect(statSync(file('data', 'staged/out.zip')).ino).toBe(statSync(file('data', 'jobs/out.zip')).ino);
  expect(statSync(file('data', 'jobs/out.zip')).nlink).toBe(2);
  expect(await text('staged/out.zip')).toBe('trained weights');
  const [source, copy] = await Promise.all(['jobs/out.zip', 'staged/out.zip'].map((Key) => s3.send(new HeadObjectCommand({ Bucket: 'data', Key }))));
  expect(copy!.ETag).toBe(source!.ETag);
  expect(copy!.ContentType).toBe('application/zip');
  expect(copy!.Metadata).toEqual({ run: '1' });
  // Across buckets too (one directory, one filesystem).
  await s3.send(new CopyObjectCommand({ Bucket: 'other', Key: 'x', CopySource: 'data/jobs/out.zip', MetadataDirective: 'REPLACE', ContentType: 'text/plain' }));
  expect(await text('x', 'other')).toBe('trained weights');
  expect((await s3.send(new HeadObjectCommand({ Bucket: 'other', Key: 'x' }))).ContentType).toBe('text/plain');
});

it('leaves a copy as it was when its source is written again, and the source when the copy is', async () => {
  await put('a', 'first');
  await s3.send(new CopyObjectCommand({ Bucket: 'data', Key: 'b', CopySource: 'data/a' }));
  await put('a', 'second, longer than the first');
  expect(await text('a')).toBe('second, longer than the first');
  expect(await text('b')).toBe('first');
  await put('b', 'third');
  expect(await text('a')).toBe('second, longer than the first');
  expect(await text('b')).toBe('third');
  expect((await s3.send(new HeadObjectCommand({ Bucket: 'data', Key: 'b' }))).ContentLength).toBe(5);
});

it('serves a GET begun before a PUT of the same key the old object, whole', async () => {
  const old = Buffer.alloc(8 * 1024 * 1024, 'o');
  await put('big', old);
  const reading = (await s3.send(new GetObjectCommand({ Bucket: 'data', Key: 'big' }))).Body as Readable;
  // The first bytes are here: the server has the old file open.
  const chunks: Buffer[] = [];
  const first = await new Promise<Buffer>((resolve) => reading.once('data', resolve));
  chunks.push(first);
  reading.pause();
  await put('big', 'new');
  for await (const c of reading) chunks.push(c as Buffer);
  expect(Buffer.concat(chunks).equals(old)).toBe(true);
  expect(await text('big')).toBe('new');
});

it('lists objects only, never a file being written, and leaves no temporary file behind', async () => {
  const keys = (await s3.send(new ListObjectsV2Command({ Bucket: 'data' }))).Contents!.map((o) => o.Key);
  expect(keys.sort()).toEqual(['a', 'b', 'big', 'jobs/out.zip', 'staged/out.zip']);
  const leftovers = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? leftovers(join(d, e.name)) : e.name.endsWith('.tmp') ? [e.name] : []));
  expect(leftovers(join(dir, 's3'))).toEqual([]);
});
