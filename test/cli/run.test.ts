/**
 * `dreambooth run` against a real HTTP server on loopback that answers as the predictions API
 * does (Replicate's prediction object): what it sends, how it follows, the files it writes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, UsageError } from '#cli/client';
import type { Context } from '#cli/commands/common';
import { parseTarget, run, type Prediction } from '#cli/commands/run';
import { Out } from '#cli/output';

const VERSION = 'a'.repeat(64);
const FAILING = 'f'.repeat(64);
const TOKEN = 'r8_test';
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

interface Request {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** The API as the command meets it: a prediction goes starting → processing (logs growing) → its end. */
async function startApi() {
  const requests: Request[] = [];
  const polls = new Map<string, number>();
  let base = '';
  const states = (id: string, version: string): Prediction[] => {
    const urls = { get: `${base}/v1/predictions/${id}` };
    if (version === FAILING) return [{ id, status: 'processing', logs: 'setup\n', urls }, { id, status: 'failed', logs: 'setup\nboom\n', error: 'CUDA out of memory', urls }];
    return [
      { id, status: 'processing', logs: 'loading weights\nstep 1/2', urls },
      { id, status: 'processing', logs: 'loading weights\nstep 1/2\nstep 2/2\n', urls },
      { id, status: 'succeeded', logs: 'loading weights\nstep 1/2\nstep 2/2\n', output: [`${base}/files/${id}/out-0.png?X-Amz-Signature=secret`, `data:image/png;base64,${PNG.toString('base64')}`], urls },
    ];
  };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const r = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
    requests.push(r);
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.headers.authorization !== `Bearer ${TOKEN}` && !req.url!.startsWith('/files/')) return json(401, { detail: 'Invalid token.' });
    if (r.method === 'POST' && r.url === '/v1/predictions') {
      const { version } = JSON.parse(r.body) as { version: string };
      const id = `p-${version.slice(-64, -60)}-${requests.length}`;
      return json(201, { id, status: 'starting', logs: '', version, urls: { get: `${base}/v1/predictions/${id}` } });
    }
    if (r.method === 'POST' && r.url === '/v1/models/acme/cjw/predictions') {
      // Prefer: wait honoured: it ended within the wait.
      return json(201, { id: 'p-latest', status: 'succeeded', output: 'a text answer', logs: 'done\n' });
    }
    const poll = r.url.match(/^\/v1\/predictions\/(p-(\w{4})-\d+)$/);
    if (r.method === 'GET' && poll) {
      const n = polls.get(poll[1]!) ?? 0;
      polls.set(poll[1]!, n + 1);
      const version = poll[2] === 'ffff' ? FAILING : VERSION;
      const all = states(poll[1]!, version);
      return json(200, all[Math.min(n, all.length - 1)]);
    }
    if (r.method === 'GET' && r.url.startsWith('/files/')) {
      // A presigned URL of another origin would carry no token: this one is on the API's origin.
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return json(403, { detail: 'no' });
      return res.writeHead(200, { 'content-type': 'image/png' }).end(PNG);
    }
    json(404, { detail: 'Not found.' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, requests, stop: () => new Promise<void>((r) => server.close(() => r())) };
}

function context(base: string) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const text = { out: '', err: '' };
  stdout.on('data', (c) => (text.out += c));
  stderr.on('data', (c) => (text.err += c));
  const ctx: Context = {
    out: new Out(stdout as unknown as NodeJS.WriteStream, stderr as unknown as NodeJS.WriteStream),
    settings: () => ({ apiUrl: base, token: TOKEN, source: 'test' }),
    client: () => new Client({ baseUrl: base, token: TOKEN }),
  };
  return { ctx, text };
}

describe('dreambooth run', () => {
  let api: Awaited<ReturnType<typeof startApi>>;
  beforeAll(async () => {
    api = await startApi();
  });
  afterAll(() => api.stop());

  it('creates the prediction with Prefer: wait, follows it to the end and writes each file output', async () => {
    // Prepare
    const dir = mkdtempSync(join(tmpdir(), 'run-out-'));
    const image = join(dir, 'face.png');
    writeFileSync(image, PNG);
    const { ctx, text } = context(api.base);

    // Act
    const code = await run(ctx, `acme/cjw:${VERSION}`, { input: ['prompt=a photo of cjw on the moon', 'seed=7', `image=@${image}`], output: dir, pollMs: 5 });

    // Assess: the request
    expect(code).toBe(0);
    const created = api.requests.find((r) => r.method === 'POST')!;
    expect(created.headers.prefer).toBe('wait');
    expect(JSON.parse(created.body)).toEqual({
      version: `acme/cjw:${VERSION}`,
      input: { prompt: 'a photo of cjw on the moon', seed: 7, image: `data:image/png;base64,${PNG.toString('base64')}` },
    });
    // The progress: each status once, each log line once, complete lines only until the end.
    expect(text.err.match(/\] processing$/gm)).toHaveLength(1);
    for (const line of ['loading weights', 'step 1/2', 'step 2/2']) expect(text.err.split('\n').filter((l) => l.endsWith(`] ${line}`))).toHaveLength(1);
    // The files: one downloaded (with the token: the API's own origin), one from its data URI.
    const paths = text.out.trim().split('\n');
    expect(paths).toHaveLength(2);
    expect(paths[0]).toBe(join(dir, 'out-0.png'));
    expect(paths[1]).toMatch(new RegExp(`^${dir}/p-aaaa-\\d+-1\\.png$`));
    for (const p of paths) expect(readFileSync(p).equals(PNG)).toBe(true);
    expect(text.err).not.toContain('secret');
  });

  it('never writes over a file already there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-again-'));
    writeFileSync(join(dir, 'out-0.png'), 'mine');
    const { ctx, text } = context(api.base);
    expect(await run(ctx, `acme/cjw:${VERSION}`, { input: ['prompt=x'], output: dir, pollMs: 5 })).toBe(0);
    expect(readFileSync(join(dir, 'out-0.png'), 'utf8')).toBe('mine');
    expect(text.out.split('\n')[0]).toBe(join(dir, 'out-0-1.png'));
    expect(readdirSync(dir)).toHaveLength(3);
  });

  it("runs the model's latest version without a version, and prints an output that is no file", async () => {
    const { ctx, text } = context(api.base);
    expect(await run(ctx, 'acme/cjw', { input: ['prompt=hello'], output: mkdtempSync(join(tmpdir(), 'run-text-')) })).toBe(0);
    const created = api.requests.filter((r) => r.method === 'POST').at(-1)!;
    expect(created.url).toBe('/v1/models/acme/cjw/predictions');
    expect(JSON.parse(created.body)).toEqual({ input: { prompt: 'hello' } });
    expect(text.out).toBe('a text answer\n');
  });

  it('exits non-zero with the error of a failed prediction, its logs shown', async () => {
    const { ctx, text } = context(api.base);
    expect(await run(ctx, `acme/cjw:${FAILING}`, { input: ['prompt=x'], output: tmpdir(), pollMs: 5 })).toBe(1);
    expect(text.err).toMatch(/error: prediction p-ffff-\d+ failed: CUDA out of memory/);
    expect(text.err).toContain('] boom');
    expect(text.out).toBe('');
  });

  it('refuses a bad target or a missing file before any request', async () => {
    const before = api.requests.length;
    const { ctx } = context(api.base);
    await expect(run(ctx, 'acme', { input: [] })).rejects.toThrow(UsageError);
    await expect(run(ctx, 'acme/cjw:abc', { input: [] })).rejects.toThrow(/64 hex/);
    await expect(run(ctx, 'acme/cjw', { input: ['image=@/no/such.png'] })).rejects.toThrow(/-i image=@\/no\/such.png: no such file/);
    expect(api.requests.length).toBe(before);
    expect(parseTarget(`a/b:${VERSION}`)).toEqual({ model: 'a/b', version: VERSION });
  });
});
