import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendLayer } from '#shared/oci/append';
import { RegistryClient, RegistryError } from '#shared/oci/registry';
import { tarEntries } from '#shared/oci/tar';
import { createDemoTemplate } from '#shared/oci/template';
import { readLimited } from '#shared/oci/types';
import { requireRegistry } from '#test-helpers/capabilities';
import { opensslAvailable, startRegistry, type TestRegistry } from '#test-helpers/registry';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
/** Bytes that differ from chunk to chunk, so a misplaced chunk changes the digest. */
const pattern = (size: number) => Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + (i >> 8)) & 0xff));
const pieces = (b: Buffer, n: number) => Readable.from(Array.from({ length: Math.ceil(b.length / n) }, (_, i) => b.subarray(i * n, (i + 1) * n)));

const registry = requireRegistry('the registry client against a real registry');

describe.skipIf(registry.skip)('RegistryClient on a real registry', () => {
  let registry: TestRegistry;
  let client: RegistryClient;

  beforeAll(async () => {
    registry = await startRegistry();
    client = new RegistryClient({ baseUrl: registry.url });
  });
  afterAll(() => registry?.stop());

  it('uploads a stream in one PATCH and reads it back', async () => {
    const data = pattern(300_000);
    const out = await client.uploadBlob('acme/blobs', pieces(data, 7000));
    expect(out).toEqual({ digest: digestOf(data), size: data.length });
    expect(await client.hasBlob('acme/blobs', out.digest)).toBe(true);
    expect((await readLimited(await client.getBlob('acme/blobs', out.digest), 1e6, 'blob')).equals(data)).toBe(true);
  });

  it('uploads a stream in fixed-size PATCH chunks', async () => {
    const chunked = new RegistryClient({ baseUrl: registry.url, chunkBytes: 64 * 1024 });
    const data = pattern(200_001).reverse();
    const out = await chunked.uploadBlob('acme/chunks', pieces(data, 10_000), digestOf(data));
    expect(out.digest).toBe(digestOf(data));
    expect((await readLimited(await chunked.getBlob('acme/chunks', out.digest), 1e6, 'blob')).equals(data)).toBe(true);
  });

  it('refuses content that does not match the announced digest, and stores nothing', async () => {
    const data = pattern(1000);
    const wrong = digestOf(Buffer.from('other'));
    await expect(client.uploadBlob('acme/blobs', pieces(data, 100), wrong)).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    await expect(client.uploadBlob('acme/blobs', data, wrong)).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
    expect(await client.hasBlob('acme/blobs', wrong)).toBe(false);
  });

  it('passes on the error of the stream it uploads', async () => {
    const failing = Readable.from((async function* () {
      yield Buffer.alloc(1000);
      throw new Error('weights vanished');
    })());
    await expect(client.uploadBlob('acme/blobs', failing)).rejects.toThrow('weights vanished');
  });

  it('answers null for a missing manifest and a RegistryError with the registry code for a missing blob', async () => {
    expect(await client.headManifest('acme/none', 'latest')).toBeNull();
    const err = await client.getBlob('acme/none', digestOf(Buffer.from('x'))).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err).toMatchObject({ status: 404, code: 'BLOB_UNKNOWN' });
  });

  it('rejects names that could escape the API path before sending anything', async () => {
    await expect(client.hasBlob('../v2', digestOf(Buffer.from('x')))).rejects.toMatchObject({ code: 'NAME_INVALID' });
    await expect(client.getManifest('acme/a', '../../x')).rejects.toMatchObject({ code: 'DIGEST_INVALID' });
  });

  it('reports a mount the registry could not do as false (blob unknown in the source)', async () => {
    expect(await client.mountBlob('acme/target', digestOf(Buffer.from('absent')), 'acme/blobs')).toBe(false);
  });
});

describe.skipIf(registry.skip || !opensslAvailable())('RegistryClient with token auth', () => {
  const auth = { username: 'builder', password: 's3cret-password' };
  let registry: TestRegistry;

  beforeAll(async () => {
    registry = await startRegistry({ auth });
  });
  afterAll(() => registry?.stop());

  it('gets Bearer tokens with its credentials for the scopes each call needs, mount included', async () => {
    // Prepare
    const client = new RegistryClient({ baseUrl: registry.url, auth });
    const template = await createDemoTemplate(client, 'templates/vanilla-template', 'latest');

    // Act
    const out = await appendLayer({
      source: client,
      sourceRepo: 'templates/vanilla-template',
      sourceRef: template,
      target: client,
      targetRepo: 'acme/dog',
      tag: 'v1',
      layer: () => tarEntries([{ path: 'model_index.json', size: 2, stream: () => Readable.from([Buffer.from('{}')]) }]),
      labels: {},
    });

    // Assess
    expect((await client.headManifest('acme/dog', 'v1'))?.digest).toBe(out.manifestDigest);
    expect(registry.tokenRequests.every((r) => r.authorized)).toBe(true);
    expect(registry.tokenRequests.map((r) => r.scopes)).toContainEqual(['repository:acme/dog:pull,push', 'repository:templates/vanilla-template:pull']);
  });

  it('fails without credentials, and never puts the password in an error', async () => {
    const anonymous = new RegistryClient({ baseUrl: registry.url });
    await expect(anonymous.headManifest('templates/vanilla-template', 'latest')).rejects.toThrow(/token request .* refused/);

    const wrong = new RegistryClient({ baseUrl: registry.url, auth: { ...auth, password: 'wrong-password' } });
    const err: Error = await wrong.hasBlob('acme/dog', digestOf(Buffer.from('x'))).catch((e) => e);
    expect(err.message).toMatch(/refused/);
    expect(`${err.message} ${err.stack}`).not.toContain('wrong-password');
    expect(registry.tokenRequests.at(-1)?.authorized).toBe(false);
  });
});
