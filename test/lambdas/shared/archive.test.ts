import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yauzl from 'yauzl';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  ArchiveError,
  fileSource,
  inspectArchive,
  s3Source,
  yauzlReader,
  type ArchiveLimits,
  type RandomAccessSource,
} from '#shared/archive';
import { zip, type Item } from '#test-helpers/zips';

// s3rver ships no type declarations; this is the part the test uses.
type S3rverServer = { run(): Promise<{ port: number }>; close(): Promise<void> };
const S3rver = createRequire(import.meta.url)('s3rver') as new (opts: object) => S3rverServer;

const MiB = 1024 * 1024;
let s3Endpoint = '';

const LIMITS: ArchiveLimits = { maxBytes: 50 * 1024 ** 2, maxEntries: 100, maxUncompressedBytes: 100 * 1024 ** 2, maxRatio: 200 };

const bufferSource = (data: Buffer): RandomAccessSource & { reads: number } => ({
  size: data.length,
  reads: 0,
  async read(offset, length) {
    this.reads++;
    return data.subarray(offset, offset + length);
  },
});

const pipeline = (): Item[] => [
  { name: 'model_index.json', data: JSON.stringify({ _class_name: 'StableDiffusionPipeline' }) },
  { name: 'args.json', data: '{}' },
  { name: 'unet/', dir: true },
  { name: 'unet/config.json', data: '{}' },
  { name: 'unet/diffusion_pytorch_model.safetensors', data: randomBytes(64 * 1024) },
  { name: 'vae/config.json', data: '{}' },
  { name: 'samples/0.png', data: randomBytes(1024), compress: false },
];

async function refusal(items: Item[], limits: ArchiveLimits = LIMITS): Promise<string> {
  const err = await inspectArchive(bufferSource(await zip(items)), limits).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ArchiveError);
  return (err as ArchiveError).message;
}

describe('inspectArchive', () => {
  it('summarises a diffusers pipeline archive', async () => {
    const items = pipeline();
    const summary = await inspectArchive(bufferSource(await zip(items)), LIMITS);
    const declared = items.reduce((n, i) => n + (i.dir ? 0 : Buffer.byteLength(i.data ?? '')), 0);
    expect(summary).toEqual({
      entries: items.length,
      uncompressedBytes: declared,
      rootFiles: ['args.json', 'model_index.json'],
      topDirs: ['samples', 'unet', 'vae'],
    });
  });

  it('reads a local file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'archive-'));
    try {
      const path = join(dir, 'output.zip');
      await writeFile(path, await zip(pipeline()));
      expect((await inspectArchive(await fileSource(path), LIMITS)).rootFiles).toContain('model_index.json');
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it.each([
    ['../x', '"../x" has a ".." segment'],
    ['../out2/x', '"../out2/x" has a ".." segment'],
    ['a/../../x', '"a/../../x" has a ".." segment'],
    ['/abs', '"/abs" is an absolute path'],
    ['a\\b', '"a\\\\b" has a backslash'],
    ['nul\0x', 'NUL character'],
    // Not normalised: refused at staging, as the build would refuse them.
    ['./x', '"./x" is not a normalised path (a "." segment)'],
    ['a/./b', '"a/./b" is not a normalised path (a "." segment)'],
    ['a//b', '"a//b" is not a normalised path (an empty segment'],
  ])('refuses the entry name %j', async (name, message) => {
    expect(await refusal([...pipeline(), { name }])).toContain(message);
  });

  it('refuses symlink entries', async () => {
    expect(await refusal([...pipeline(), { name: 'link', data: '/etc/passwd', mode: 0o120777 }])).toMatch(
      /"link" is a symlink/,
    );
  });

  it('accepts plain file modes', async () => {
    await expect(inspectArchive(bufferSource(await zip([...pipeline(), { name: 'run.sh', mode: 0o100755 }])), LIMITS)).resolves.toBeTruthy();
  });

  it.each([
    [['a.txt', 'a.txt'], '"a.txt" duplicates'],
    [['unet/config.json', 'unet'], '"unet" duplicates'],
  ])('refuses duplicate names %j', async (names, message) => {
    expect(await refusal([...pipeline().filter((i) => i.name !== 'unet/config.json'), ...names.map((name) => ({ name }))])).toContain(message);
  });

  it('refuses an entry under a file of the same name', async () => {
    expect(await refusal([...pipeline(), { name: 'args.json/x' }])).toContain('"args.json/x" lies under args.json, which is a file');
  });

  it('refuses an archive without model_index.json at the root, and says when it is one level down', async () => {
    const nested = pipeline().map((i) => ({ ...i, name: `model/${i.name}` }));
    const message = await refusal(nested);
    expect(message).toContain('no model_index.json at its root');
    expect(message).toContain('under model/');
    expect(await refusal(pipeline().slice(1))).toContain('no model_index.json at its root');
  });

  it('checks other required root files when asked', async () => {
    expect(await refusal(pipeline(), { ...LIMITS, requiredRootFiles: ['model_index.json', 'weights.bin'] })).toContain('no weights.bin');
  });

  it('refuses more entries than the limit, from the count alone', async () => {
    const items = Array.from({ length: 11 }, (_, i) => ({ name: i === 0 ? 'model_index.json' : `f${i}` }));
    expect(await refusal(items, { ...LIMITS, maxEntries: 10 })).toContain('11 entries, more than the limit of 10');
    await expect(inspectArchive(bufferSource(await zip(items.slice(0, 10))), { ...LIMITS, maxEntries: 10 })).resolves.toMatchObject({ entries: 10 });
  });

  it('refuses a zip bomb by ratio', async () => {
    const bomb = { name: 'unet/zeros.bin', data: Buffer.alloc(4 * 1024 * 1024) };
    expect(await refusal([...pipeline(), bomb])).toMatch(/"unet\/zeros.bin" expands \d+-fold, more than the limit of 200/);
  });

  it('refuses an archive above maxBytes before reading it', async () => {
    const source = bufferSource(await zip(pipeline()));
    await expect(inspectArchive(source, { ...LIMITS, maxBytes: source.size - 1 })).rejects.toThrow(/more than the limit/);
    expect(source.reads).toBe(0);
  });

  it('refuses declared sizes above maxUncompressedBytes, per entry and in total', async () => {
    const big = { name: 'big.bin', data: randomBytes(210_000) };
    const limits = { ...LIMITS, maxUncompressedBytes: 200_000 };
    expect(await refusal([...pipeline(), big], limits)).toContain('"big.bin" declares 210000 bytes');
    const halves = [{ name: 'a.bin', data: randomBytes(120_000) }, { name: 'b.bin', data: randomBytes(120_000) }];
    expect(await refusal([...halves, ...pipeline()], limits)).toContain('"b.bin" brings the declared total to 240000 bytes');
  });

  it('refuses encrypted entries', async () => {
    const data = await zip(pipeline());
    // Set the "encrypted" flag of the first central directory record.
    const cd = data.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    data.writeUInt16LE(data.readUInt16LE(cd + 8) | 1, cd + 8);
    await expect(inspectArchive(bufferSource(data), LIMITS)).rejects.toThrow(/"model_index.json" is encrypted/);
  });

  it('refuses data that is not a zip', async () => {
    await expect(inspectArchive(bufferSource(randomBytes(4096)), LIMITS)).rejects.toThrow(ArchiveError);
  });

  it('reads a large central directory in a few reads', async () => {
    const items = [{ name: 'model_index.json' }, ...Array.from({ length: 3000 }, (_, i) => ({ name: `tokenizer/part-${i}.txt`, data: 'x', compress: false }))];
    const source = bufferSource(await zip(items));
    const summary = await inspectArchive(source, { ...LIMITS, maxEntries: 5000 });
    expect(summary.entries).toBe(3001);
    expect(source.reads).toBeLessThanOrEqual(3);
  });
});

describe('yauzlReader', () => {
  it('extracts small and large entries with few reads', async () => {
    const weights = randomBytes(3 * 1024 * 1024 + 17);
    const source = bufferSource(await zip([...pipeline(), { name: 'unet/weights.bin', data: weights, compress: false }]));
    const zipfile = await yauzl.fromRandomAccessReaderPromise(yauzlReader(source), source.size);
    const contents = new Map<string, Buffer>();
    for await (const entry of zipfile.eachEntry()) {
      if (entry.fileName.endsWith('/')) continue;
      const chunks: Buffer[] = [];
      for await (const c of await zipfile.openReadStreamPromise(entry)) chunks.push(c as Buffer);
      contents.set(entry.fileName, Buffer.concat(chunks));
    }
    expect(contents.get('unet/weights.bin')?.equals(weights)).toBe(true);
    expect(contents.get('args.json')?.toString()).toBe('{}');
    expect(source.reads).toBeLessThanOrEqual(10);
  });
});

describe('s3Source', () => {
  let dir: string;
  let server: S3rverServer;
  let s3: S3Client;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 's3rver-'));
    server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir });
    const { port } = await server.run();
    s3Endpoint = `http://127.0.0.1:${port}`;
    s3 = new S3Client({
      endpoint: s3Endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    await s3.send(new CreateBucketCommand({ Bucket: 'staged' }));
  });

  afterAll(async () => {
    s3?.destroy();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('inspects an archive staged in S3 through ranged reads', async () => {
    const data = await zip(pipeline());
    await s3.send(new PutObjectCommand({ Bucket: 'staged', Key: 'trainings/t1/output.zip', Body: data }));
    const source = s3Source(s3, 'staged', 'trainings/t1/output.zip', data.length);
    expect(await source.read(0, 4)).toEqual(data.subarray(0, 4));
    expect(await source.read(data.length - 22, 22)).toEqual(data.subarray(data.length - 22));
    const summary = await inspectArchive(source, LIMITS);
    expect(summary.rootFiles).toEqual(['args.json', 'model_index.json']);
  });

  it('refuses a bad archive staged in S3', async () => {
    const data = await zip([...pipeline(), { name: '../escape' }]);
    await s3.send(new PutObjectCommand({ Bucket: 'staged', Key: 'trainings/t2/output.zip', Body: data }));
    await expect(inspectArchive(s3Source(s3, 'staged', 'trainings/t2/output.zip', data.length), LIMITS)).rejects.toThrow(
      /"..\/escape" has a ".." segment/,
    );
  });

  it('streams a long read window by window, each GET sent before the previous body is consumed', async () => {
    const data = randomBytes(3 * MiB + 123);
    await s3.send(new PutObjectCommand({ Bucket: 'staged', Key: 'trainings/t3/output.zip', Body: data }));
    const { client, ranges } = recording(s3Endpoint);
    const source = s3Source(client, 'staged', 'trainings/t3/output.zip', data.length, { window: MiB });
    const stream = source.stream!(100, 3 * MiB);
    const first = await new Promise<Buffer>((resolve) => stream.once('data', resolve));
    stream.pause();
    // While the first window is being read, the second has been asked for (waited for, not
    // timed: a loaded machine sends it later); no further.
    await until(() => ranges.length >= 2);
    expect(ranges).toEqual([`bytes=100-${100 + MiB - 1}`, `bytes=${100 + MiB}-${100 + 2 * MiB - 1}`]);
    const rest: Buffer[] = [first];
    for await (const c of stream) rest.push(c as Buffer);
    expect(Buffer.concat(rest).equals(data.subarray(100, 100 + 3 * MiB))).toBe(true);
    expect(ranges).toHaveLength(3);
    client.destroy();
  });

  it('refuses a missing object at once (a 4xx is not retried)', async () => {
    const { client, ranges } = recording(s3Endpoint);
    const source = s3Source(client, 'staged', 'trainings/none/output.zip', 10 * MiB, { window: 4 * MiB });
    await expect(collect(source.stream!(0, 10 * MiB))).rejects.toThrow(/NoSuchKey|specified key does not exist/);
    expect(ranges.filter((r) => r === `bytes=0-${4 * MiB - 1}`)).toHaveLength(1);
    client.destroy();
  });
});

describe('s3Source streams against a server that breaks bodies off', () => {
  // Larger than loopback's socket buffers: an unread body keeps its response open.
  const data = randomBytes(24 * MiB + 7);
  let server: Server;
  let endpoint: string;
  /** Responses still open (started, neither finished nor closed). */
  let open = 0;
  let breaks = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const [from, to] = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '')!.slice(1).map(Number) as [number, number];
      open++;
      res.once('close', () => open--);
      res.writeHead(206, { 'content-length': to - from + 1, 'content-range': `bytes ${from}-${to}/${data.length}`, 'content-type': 'application/zip' });
      if (breaks > 0) {
        // Half the body, then the connection drops.
        breaks--;
        res.write(data.subarray(from, from + Math.floor((to - from + 1) / 2)), () => setTimeout(() => req.socket.destroy(), 20));
        return;
      }
      res.end(data.subarray(from, to + 1));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('asks again from the byte where a body broke off', async () => {
    breaks = 1;
    const { client, ranges } = recording(endpoint);
    const got = await collect(s3Source(client, 'b', 'k', data.length, { window: MiB }).stream!(0, data.length));
    expect(got.equals(data)).toBe(true);
    // The first window broke off halfway; its rest was asked for from there.
    expect(ranges).toContain(`bytes=${MiB / 2}-${MiB - 1}`);
    client.destroy();
  });

  it('gives up after its tries with the error', async () => {
    breaks = 10;
    const { client } = recording(endpoint);
    await expect(collect(s3Source(client, 'b', 'k', data.length, { window: MiB, tries: 2 }).stream!(0, data.length))).rejects.toThrow();
    breaks = 0;
    client.destroy();
  });

  it('leaves no response open when the reader stops early', async () => {
    breaks = 0;
    const { client } = recording(endpoint);
    const stream = s3Source(client, 'b', 'k', data.length, { window: 12 * MiB }).stream!(0, data.length);
    await new Promise((resolve) => stream.once('data', resolve));
    stream.destroy();
    // Each response's close event is waited for, not a fixed time.
    await until(() => open === 0);
    expect(open).toBe(0);
    client.destroy();
  });
});


async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** An S3 client whose GETs' Range headers are recorded, in the order they were sent. */
function recording(endpoint: string) {
  const ranges: string[] = [];
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
  });
  client.middlewareStack.add(
    (next) => async (args) => {
      const range = (args.request as { headers?: Record<string, string> }).headers?.range;
      if (range) ranges.push(range);
      return next(args);
    },
    { step: 'finalizeRequest' },
  );
  return { client, ranges };
}

/** Resolves once `condition` holds; fails after `timeoutMs` (an event that never comes is a failure, not a hang). */
async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('the awaited condition did not hold in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
