/**
 * The Cog upload relay: run next to a Cog trainer and give Cog its URL as `--upload-url`
 * (started by bin/cog-upload-relay.ts).
 *
 * Cog PUTs each output file to `<upload-url><filename>` and reports the answer's `Location`. The
 * relay streams the body into S3 as a multipart upload through part URLs the API presigns, so
 * memory stays at a few parts whatever the file size, and answers 201 with the `s3://` location
 * the pipeline stages from. Presigned URLs and the token are never printed.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sendParts } from './parts.ts';
import { RelayError, UploadApi } from './upload-api.ts';

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
