/**
 * Local stand-in for API Gateway: turns HTTP requests into the same proxy events the deployed
 * API sends, runs the token authorizer on the token routes, and calls the same handlers.
 * Also the trainer upload sink a Cog trainer needs (`--upload-url`): PUT stores into S3,
 * GET serves it back to the pipeline.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Readable } from 'node:stream';

type ProxyHandler = (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>;
type Authorizer = (event: { type: 'TOKEN'; authorizationToken: string; methodArn: string }) => Promise<{
  context?: Record<string, unknown>;
}>;

export interface LocalServerOptions {
  port: number;
  api: ProxyHandler;
  /** The trainer callback route. */
  callback: ProxyHandler;
  /** The Cog upload relay's routes. */
  uploads: ProxyHandler;
  /** The seed's upload helper, `POST /v1/upload/{filename}` (token route). */
  upload: ProxyHandler;
  authorizer: Authorizer;
  s3: S3Client;
  bucket: string;
  /** API Gateway's own payload cap. */
  maxBodyBytes?: number;
  /** Extra routes (e.g. the --demo instance data). */
  extra?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
}

const METHOD_ARN = 'arn:aws:execute-api:us-east-1:000000000000:local/prod';

/** POST routes API Gateway sends to a trainer-facing Lambda without a token: [resource, pattern, Lambda]. */
const TRAINER_ROUTES: ReadonlyArray<readonly [string, RegExp, 'callback' | 'uploads']> = [
  ['/v1/callbacks/{id}', /^\/v1\/callbacks\/(?<id>[^/]+)$/, 'callback'],
  ['/v1/trainer-uploads/{trainer}', /^\/v1\/trainer-uploads\/(?<trainer>[^/]+)$/, 'uploads'],
  ['/v1/trainer-uploads/{trainer}/{upload_id}/parts/{n}', /^\/v1\/trainer-uploads\/(?<trainer>[^/]+)\/(?<upload_id>[^/]+)\/parts\/(?<n>[^/]+)$/, 'uploads'],
  ['/v1/trainer-uploads/{trainer}/{upload_id}/complete', /^\/v1\/trainer-uploads\/(?<trainer>[^/]+)\/(?<upload_id>[^/]+)\/complete$/, 'uploads'],
  ['/v1/trainer-uploads/{trainer}/{upload_id}/abort', /^\/v1\/trainer-uploads\/(?<trainer>[^/]+)\/(?<upload_id>[^/]+)\/abort$/, 'uploads'],
];

/** The resource and (decoded) path parameters API Gateway would give a trainer route. */
function matchTrainerRoute(path: string): { resource: string; target: 'callback' | 'uploads'; pathParameters: Record<string, string> } | null {
  for (const [resource, pattern, target] of TRAINER_ROUTES) {
    const groups = path.match(pattern)?.groups;
    if (!groups) continue;
    try {
      return { resource, target, pathParameters: Object.fromEntries(Object.entries(groups).map(([k, v]) => [k, decodeURIComponent(v)])) };
    } catch {
      return null;
    }
  }
  return null;
}

export async function startLocalServer(opts: LocalServerOptions): Promise<{ url: string; port: number; stop(): Promise<void> }> {
  let publicUrl = '';
  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) send(res, 500, { detail: 'internal error', status: 500 });
      process.stderr.write(`local server: ${(e as Error).message}\n`);
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://local');
    if (opts.extra?.(req, res)) return;
    let m: RegExpMatchArray | null;
    if (req.method === 'PUT' && (m = url.pathname.match(/^\/v1\/trainer-uploads\/([^/]+)$/))) return upload(req, res, m[1]!);
    if (req.method === 'GET' && (m = url.pathname.match(/^\/v1\/trainer-outputs\/([a-z0-9]+)\/([^/]+)$/))) return download(res, m[1]!, m[2]!);

    const body = await readBody(req, opts.maxBodyBytes ?? 10 * 1024 * 1024);
    if (body === null) return send(res, 413, { detail: 'request body too large', status: 413 });
    const event = toEvent(req, url, body);

    const trainerRoute = req.method === 'POST' ? matchTrainerRoute(url.pathname) : null;
    if (trainerRoute) {
      const { target, ...route } = trainerRoute;
      Object.assign(event, route);
      return reply(res, await opts[target](event));
    }
    let context: Record<string, unknown> | undefined;
    try {
      ({ context } = await opts.authorizer({ type: 'TOKEN', authorizationToken: req.headers.authorization ?? '', methodArn: `${METHOD_ARN}/${req.method}${url.pathname}` }));
    } catch {
      return send(res, 401, { detail: 'Unauthorized: send Authorization: Bearer <token> (or Token <token>)', status: 401 });
    }
    event.requestContext.authorizer = context ?? {};
    const uploadHelper = req.method === 'POST' && /^\/v1\/upload\/[^/]+$/.test(url.pathname);
    return reply(res, await (uploadHelper ? opts.upload : opts.api)(event));
  }

  /** Streams a trainer's output file into S3 under an unguessable key. */
  async function upload(req: http.IncomingMessage, res: http.ServerResponse, filename: string) {
    const id = randomBytes(16).toString('hex');
    const name = decodeURIComponent(filename).replace(/[^A-Za-z0-9._-]/g, '_');
    await new Upload({
      client: opts.s3,
      params: { Bucket: opts.bucket, Key: `trainer-outputs/${id}/${name}`, Body: req, ContentType: req.headers['content-type'] ?? 'application/octet-stream' },
      partSize: 8 * 1024 * 1024,
    }).done();
    const location = `${publicUrl}/v1/trainer-outputs/${id}/${name}`;
    res.writeHead(201, { location, 'content-type': 'application/json' }).end(JSON.stringify({ url: location }));
  }

  async function download(res: http.ServerResponse, id: string, name: string) {
    try {
      const out = await opts.s3.send(new GetObjectCommand({ Bucket: opts.bucket, Key: `trainer-outputs/${id}/${name}` }));
      res.writeHead(200, { 'content-type': out.ContentType ?? 'application/octet-stream', 'content-length': String(out.ContentLength ?? '') });
      (out.Body as Readable).pipe(res);
    } catch {
      send(res, 404, { detail: 'not found', status: 404 });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  publicUrl = `http://127.0.0.1:${port}`;
  return {
    url: publicUrl,
    port,
    stop: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > max) return null;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

function toEvent(req: http.IncomingMessage, url: URL, body: Buffer): APIGatewayProxyEvent {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
  const query = Object.fromEntries(url.searchParams.entries());
  return {
    httpMethod: req.method ?? 'GET',
    path: url.pathname,
    resource: url.pathname,
    headers,
    multiValueHeaders: {},
    queryStringParameters: Object.keys(query).length ? query : null,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    body: body.length ? body.toString('utf8') : null,
    isBase64Encoded: false,
    requestContext: { requestId: randomBytes(8).toString('hex'), authorizer: {} } as never,
  };
}

function reply(res: http.ServerResponse, out: APIGatewayProxyResult) {
  res.writeHead(out.statusCode, (out.headers ?? {}) as http.OutgoingHttpHeaders).end(out.body);
}

function send(res: http.ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
