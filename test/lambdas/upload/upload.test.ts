/**
 * The seed's upload helper (lambdas/upload) and the api's check of its serving URLs
 * (lambdas/api/uploads.ts), against s3rver: the check asks the presigned serving URL itself.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkUploaded } from '#lambdas/api/uploads';
import { createUpload } from '#lambdas/upload/core';
import { handler } from '#lambdas/upload/handler';
import type { ApiError } from '#shared/errors';
import { startFixture, startServer, type Fixture } from '#test-helpers/aws-local';

let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture({ as: 'upload' });
});
afterAll(async () => fx?.stop());

const errorOf = (p: Promise<unknown>) => p.then(() => null, (e: Error) => e.message);
const keyOf = (url: string) => decodeURIComponent(new URL(url).pathname).split('/').slice(2).join('/');

describe('the upload helper', () => {
  it('gives a presigned PUT and a serving GET under uploads/', async () => {
    const { upload_url, serving_url } = await createUpload(fx.deps, 'person.zip');
    expect(keyOf(upload_url)).toMatch(/^uploads\/[0-9a-f]{32}\/person\.zip$/);
    expect(keyOf(serving_url)).toBe(keyOf(upload_url));
    const put = await fetch(upload_url, { method: 'PUT', headers: { 'content-type': 'application/zip' }, body: 'PK\x03\x04zip' });
    expect(put.status).toBe(200);
    const got = await fetch(serving_url);
    expect(await got.text()).toBe('PK\x03\x04zip');
  });

  it('answers API Gateway events, refusing names that are not zip names', async () => {
    const ok = await handler(uploadEvent('my%20set.zip'));
    expect(ok.statusCode).toBe(400);
    const bad = await handler(uploadEvent('..%2Fetc%2Fpasswd'));
    expect(bad.statusCode).toBe(400);
    expect(JSON.parse(bad.body).detail).toMatch(/filename: use a \.zip file name/);
    const good = await handler(uploadEvent('person.zip'));
    expect(good.statusCode).toBe(200);
    expect(Object.keys(JSON.parse(good.body)).sort()).toEqual(['serving_url', 'upload_url']);
  });
});

/** The event API Gateway sends for `POST /v1/upload/<name>` (it decodes path parameters). */
function uploadEvent(name: string): never {
  return { httpMethod: 'POST', resource: '/v1/upload/{filename}', path: `/v1/upload/${name}`, pathParameters: { filename: decodeURIComponent(name) } } as never;
}

describe('checking a serving URL when a training is created', () => {
  it('refuses one that nothing was uploaded to', async () => {
    const { serving_url } = await createUpload(fx.deps, 'empty.zip');
    expect(await errorOf(checkUploaded(fx.deps, serving_url))).toMatch(/nothing was uploaded to this serving_url yet/);
  });

  it('accepts an upload within limits.upload_max_bytes and refuses a larger one, naming both sizes', async () => {
    const { serving_url } = await createUpload(fx.deps, 'set.zip');
    await fx.deps.s3.send(new PutObjectCommand({ Bucket: fx.deps.bucket, Key: keyOf(serving_url), Body: Buffer.alloc(5000, 1) }));
    expect(await errorOf(checkUploaded(fx.deps, serving_url))).toBeNull();
    const small = fx.withConfig({ limits: { upload_max_bytes: 4096 } });
    expect(await errorOf(checkUploaded(small, serving_url))).toBe(
      'input.instance_data: the uploaded file is 5000 bytes; limits.upload_max_bytes is 4096',
    );
  });

  it('refuses an expired one, saying so', async () => {
    const Key = `uploads/${'e'.repeat(32)}/late.zip`;
    await fx.deps.s3.send(new PutObjectCommand({ Bucket: fx.deps.bucket, Key, Body: 'PK' }));
    const url = await getSignedUrl(fx.deps.s3, new GetObjectCommand({ Bucket: fx.deps.bucket, Key }), { expiresIn: 1 });
    await new Promise((r) => setTimeout(r, 2100));
    expect(await errorOf(checkUploaded(fx.deps, url))).toMatch(/this serving_url has expired; ask POST \/v1\/upload\/\{filename\} for a new one/);
  });

  it('takes an empty upload as 0 bytes, and answers 503 when the storage fails or cannot be reached', async () => {
    let status = 416;
    const storage = await startServer((_req, res) => res.writeHead(status).end());
    try {
      const url = `${storage.url}/${fx.deps.bucket}/uploads/${'f'.repeat(32)}/set.zip?X-Amz-Signature=x`;
      expect(await errorOf(checkUploaded(fx.deps, url))).toBeNull();
      expect(storage.requests.at(-1)?.headers.range).toBe('bytes=0-0');
      status = 500;
      const failed = await checkUploaded(fx.deps, url).catch((e: ApiError) => e);
      expect(failed).toMatchObject({ status: 503, detail: 'input.instance_data: the serving_url answered 500; try again' });
      await storage.close();
      const down = await checkUploaded(fx.deps, url).catch((e: ApiError) => e);
      expect(down).toMatchObject({ status: 503, detail: expect.stringMatching(/the serving_url could not be reached \(\w+\); try again/) });
    } finally {
      await storage.close();
    }
  });

  it('leaves other URLs to the trainer', async () => {
    expect(await errorOf(checkUploaded(fx.deps, 'https://example.com/data.zip'))).toBeNull();
    expect(await errorOf(checkUploaded(fx.deps, undefined))).toBeNull();
  });
});
