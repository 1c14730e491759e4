/**
 * The end of `npm start -- --demo`: the picture of the demo prediction written into the data
 * directory, fetched from a real HTTP server on loopback as the API serves a file output.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePredictionImage } from '#infra/local/demo';

const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

describe("the demo prediction's picture", () => {
  let base: string;
  let server: http.Server;
  const seen: (string | undefined)[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      if (req.url?.startsWith('/files/')) res.writeHead(200, { 'content-type': 'image/png' }).end(PNG);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('writes the first file output into the data directory, prints its path, and keeps an earlier one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'demo-data-'));
    const lines: string[] = [];
    const prediction = { id: 'p1', status: 'succeeded', output: [`${base}/files/p1/out-0.png`, `${base}/files/p1/out-1.png`] };
    const headersFor = () => ({ authorization: 'Token t' });

    const first = await writePredictionImage(prediction, dir, headersFor, (l) => lines.push(l));
    const second = await writePredictionImage(prediction, dir, headersFor, (l) => lines.push(l));

    expect(first).toBe(join(dir, 'out-0.png'));
    expect(second).toBe(join(dir, 'out-0-1.png'));
    expect(readFileSync(first!).equals(PNG)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['out-0-1.png', 'out-0.png']);
    expect(lines).toEqual([`  picture ${first}`, `  picture ${second}`]);
    expect(seen.at(-1)).toBe('Token t');
  });

  it('writes a data URI output, named after the prediction', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'demo-data-'));
    const path = await writePredictionImage({ id: 'p2', output: `data:image/png;base64,${PNG.toString('base64')}` }, dir, () => ({}), () => undefined);
    expect(path).toBe(join(dir, 'demo-p2-0.png'));
    expect(readFileSync(path!).equals(PNG)).toBe(true);
  });

  it('says so, and writes nothing, when the output holds no file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'demo-data-'));
    const lines: string[] = [];
    expect(await writePredictionImage({ id: 'p3', output: 'just text' }, dir, () => ({}), (l) => lines.push(l))).toBeNull();
    expect(lines).toEqual(['  no image in its output: "just text"']);
    expect(readdirSync(dir)).toEqual([]);
  });
});
