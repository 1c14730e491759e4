/**
 * The Cog upload relay: run next to a Cog trainer and give Cog its URL as `--upload-url`.
 *
 *   DREAMBOOTH_UPLOAD_TOKEN=… npx tsx bin/cog-upload-relay.ts --port 5001 --api https://<ApiUrl> --trainer <name>
 *   cog … --upload-url http://127.0.0.1:5001/
 *
 * Cog PUTs each output file to `<upload-url><filename>` and reports the answer's `Location`. The
 * relay streams the body into S3 as a multipart upload through part URLs the API presigns, so
 * memory stays at a few parts whatever the file size, and answers 201 with the `s3://` location
 * the pipeline stages from. Presigned URLs and the token are never printed.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

export interface RelayOptions {
  /** Base URL of the API (its `ApiUrl` output), without a trailing slash. */
  api: string;
  /** The trainer's name in the configuration. */
  trainer: string;
  /** The trainer's upload token (its `upload_token_secret`). */
  token: string;
  port?: number;
  /** Loopback by default: only the Cog server next to it should reach the relay. */
  host?: string;
  /** @default 16 MiB (S3 needs at least 5 MiB for every part but the last) */
  partSize?: number;
  /** Parts sent at once. @default 4 */
  concurrency?: number;
  log?: (line: string) => void;
}

const MiB = 1024 * 1024;
const API_TIMEOUT_MS = 30_000;
const PART_TIMEOUT_MS = 300_000;
const PART_ATTEMPTS = 3;

class RelayError extends Error {
  override name = 'RelayError';
}

export async function startUploadRelay(opts: RelayOptions): Promise<{ url: string; stop(): Promise<void> }> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const server = http.createServer((req, res) => {
    relay({ ...opts, log }, req, res).catch((e) => {
      log(`upload failed: ${(e as Error).message}`);
      const body = JSON.stringify({ detail: `the upload relay failed: ${(e as Error).message}` });
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json', connection: 'close' });
      res.end(body);
      // Let the sender finish its body so it reads the answer rather than a reset.
      req.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve);
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}/`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function relay(opts: RelayOptions, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://relay').pathname;
  if (req.method !== 'PUT' || !/^\/[^/]+$/.test(path)) {
    res.writeHead(405, { 'content-type': 'application/json', allow: 'PUT' }).end(JSON.stringify({ detail: 'PUT /<filename> only' }));
    req.resume();
    return;
  }
  const filename = decodeURIComponent(path.slice(1));
  const predictionId = String(req.headers['x-prediction-id'] ?? '');
  if (!predictionId) throw new RelayError('no X-Prediction-ID header (run Cog >= 0.9 with --upload-url)');

  const api = new UploadApi(opts);
  const { upload_id: uploadId } = await api.call<{ upload_id: string }>('', {
    filename,
    prediction_id: predictionId,
    content_type: req.headers['content-type'] ?? 'application/octet-stream',
  });
  try {
    const parts = await sendParts(api, uploadId, req, opts.partSize ?? 16 * MiB, opts.concurrency ?? 4);
    const { location } = await api.call<{ location: string }>(`/${uploadId}/complete`, { parts });
    opts.log?.(`uploaded ${filename} (${parts.length} parts) for ${predictionId}`);
    res.writeHead(201, { location, 'content-type': 'application/json' }).end(JSON.stringify({ location }));
  } catch (e) {
    await api.call(`/${uploadId}/abort`, {}).catch(() => undefined);
    throw e;
  }
}

/** Cuts the body into parts; reading waits while `concurrency` parts are on their way. */
async function sendParts(api: UploadApi, uploadId: string, body: AsyncIterable<Buffer>, partSize: number, concurrency: number) {
  const done: { n: number; etag: string }[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: Error | undefined;
  let buffered: Buffer[] = [];
  let size = 0;
  let n = 0;

  const send = async (data: Buffer) => {
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    if (failure) throw failure;
    const part = ++n;
    const p = sendPart(api, uploadId, part, data).then(
      (etag) => void done.push({ n: part, etag }),
      (e: Error) => void (failure ??= e),
    );
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const take = (bytes: number) => {
    const all = Buffer.concat(buffered, size);
    buffered = all.length > bytes ? [all.subarray(bytes)] : [];
    size = all.length - bytes;
    return all.subarray(0, bytes);
  };

  for await (const chunk of body) {
    buffered.push(chunk);
    size += chunk.length;
    while (size >= partSize) await send(take(partSize));
  }
  // An empty file is one empty part: S3 completes no upload without parts.
  if (size > 0 || n === 0) await send(take(size));
  await Promise.all(inFlight);
  if (failure) throw failure;
  return done.sort((a, b) => a.n - b.n);
}

async function sendPart(api: UploadApi, uploadId: string, n: number, data: Buffer): Promise<string> {
  let last: Error | undefined;
  for (let attempt = 1; attempt <= PART_ATTEMPTS; attempt++) {
    // A fresh URL each attempt: they are short-lived.
    const { url } = await api.call<{ url: string }>(`/${uploadId}/parts/${n}`, {});
    try {
      const res = await fetch(url, { method: 'PUT', body: data, signal: AbortSignal.timeout(PART_TIMEOUT_MS) });
      await res.arrayBuffer();
      const etag = res.headers.get('etag');
      if (res.ok && etag) return etag;
      last = new RelayError(`S3 answered ${res.status} to part ${n}`);
      if (res.status < 500) break;
    } catch (e) {
      last = new RelayError(`part ${n} could not be sent: ${(e as Error).message}`);
    }
  }
  throw last!;
}

/** The trainer-upload routes of the API, with the upload token. */
class UploadApi {
  constructor(private readonly opts: RelayOptions) {}

  async call<T>(path: string, body: unknown): Promise<T> {
    const base = `${this.opts.api.replace(/\/+$/, '')}/v1/trainer-uploads/${encodeURIComponent(this.opts.trainer)}`;
    let res: Response;
    try {
      res = await fetch(base + path, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(API_TIMEOUT_MS),
      });
    } catch (e) {
      throw new RelayError(`the API is not reachable: ${(e as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) {
      const hint = res.status === 401 ? ' (check DREAMBOOTH_UPLOAD_TOKEN and the trainer name)' : '';
      throw new RelayError(`the API answered ${res.status}${hint}: ${detailOf(text)}`);
    }
    return JSON.parse(text) as T;
  }
}

function detailOf(text: string): string {
  try {
    return String((JSON.parse(text) as { detail?: unknown }).detail ?? '').slice(0, 300);
  } catch {
    return text.slice(0, 300);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '5001' },
      host: { type: 'string', default: '127.0.0.1' },
      api: { type: 'string' },
      trainer: { type: 'string' },
    },
  });
  const token = process.env.DREAMBOOTH_UPLOAD_TOKEN;
  if (!values.api || !values.trainer || !token) {
    process.stderr.write('usage: DREAMBOOTH_UPLOAD_TOKEN=<token> cog-upload-relay --api https://<ApiUrl> --trainer <name> [--port 5001]\n');
    process.exit(2);
  }
  const relay = await startUploadRelay({ api: values.api, trainer: values.trainer, token, port: Number(values.port), host: values.host });
  process.stderr.write(`cog upload relay for trainer ${values.trainer}: start Cog with --upload-url ${relay.url}\n`);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void relay.stop().then(() => process.exit(0)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
