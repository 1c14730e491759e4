/**
 * Local stand-in for API Gateway: serves the REST API's methods as the synthesized template
 * declares them (./cloudformation/rest-api.ts) — resource paths, which methods the token
 * authorizer guards, the function each integrates, the gateway's own responses — and turns
 * requests into the same REST proxy events (`resource`, `pathParameters`). A route missing on
 * AWS is missing here. Besides, local only: the trainer upload sink a local Cog trainer needs
 * (`--upload-url`): PUT stores into S3, GET serves it back to the pipeline.
 *
 * It listens first and serves once local mode has started (the demo trainers, configured before
 * the stack is synthesized, need its URL); until then it answers 503.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Readable } from 'node:stream';
import { matchPath } from '#shared/routes';
import type { LocalApi, LocalGatewayResponse, LocalRoute } from './cloudformation/rest-api.ts';
import type { InvokeFunction } from './lambda/invoke.ts';
import { LOCAL_REST_API_ARN } from './names.ts';
import { listenSticky } from './ports.ts';

type AuthorizerResult = {
  principalId?: string;
  policyDocument?: { Statement?: Array<{ Effect?: string }> };
  context?: Record<string, unknown>;
};

export interface GatewayRoutes {
  /** The REST API of the synthesized template. */
  api: LocalApi;
  invoke: InvokeFunction;
  /** The upload sink's writer (the trainer upload relay's role on AWS) and reader (stage-weights'). */
  storage: { s3: S3Client; reader?: S3Client; bucket: string };
  /** API Gateway's own payload cap. */
  maxBodyBytes?: number;
}

export interface LocalApiGateway {
  url: string;
  port: number;
  /** Serves `routes` from now on. */
  serve(routes: GatewayRoutes): void;
  stop(): Promise<void>;
}

/** API Gateway's defaults where the template sets no gateway response. */
const DEFAULT_RESPONSES: Record<string, LocalGatewayResponse> = {
  MISSING_AUTHENTICATION_TOKEN: {
    status: 403,
    body: '{"message":"Missing Authentication Token"}',
    headers: { 'content-type': 'application/json' },
  },
  UNAUTHORIZED: { status: 401, body: '{"message":"Unauthorized"}', headers: { 'content-type': 'application/json' } },
  ACCESS_DENIED: {
    status: 403,
    body: '{"message":"User is not authorized to access this resource"}',
    headers: { 'content-type': 'application/json' },
  },
  AUTHORIZER_FAILURE: { status: 500, body: '{"message":null}', headers: { 'content-type': 'application/json' } },
  REQUEST_TOO_LARGE: { status: 413, body: '{"message":"Request Too Long"}', headers: { 'content-type': 'application/json' } },
};

/**
 * Listens on 127.0.0.1:`port` (0: any free port), or on the `last` run's port when it is free,
 * else a stable one (./ports.ts); serves nothing until `serve`.
 */
export async function listenApiGateway(port: number | { last: number }): Promise<LocalApiGateway> {
  let routes: GatewayRoutes | null = null;
  let publicUrl = '';
  const server = http.createServer((req, res) => {
    const served = routes
      ? handle(routes, publicUrl, req, res)
      : Promise.resolve(send(res, 503, { detail: 'local mode is starting', status: 503 }));
    served.catch((e) => {
      if (!res.headersSent) send(res, 500, { detail: 'internal error', status: 500 });
      process.stderr.write(`local server: ${(e as Error).message}\n`);
    });
  });
  if (typeof port === 'number') {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
  } else await listenSticky(server, port.last);
  const bound = (server.address() as AddressInfo).port;
  publicUrl = `http://127.0.0.1:${bound}`;
  return {
    url: publicUrl,
    port: bound,
    serve: (r) => {
      routes = r;
    },
    stop: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Listens and serves at once. */
export async function startApiGateway(opts: GatewayRoutes & { port: number }): Promise<LocalApiGateway> {
  const gateway = await listenApiGateway(opts.port);
  gateway.serve(opts);
  return gateway;
}

async function handle(routes: GatewayRoutes, publicUrl: string, req: http.IncomingMessage, res: http.ServerResponse) {
  const url = new URL(req.url ?? '/', 'http://local');
  let m: RegExpMatchArray | null;
  if (req.method === 'PUT' && (m = url.pathname.match(/^\/v1\/trainer-uploads\/([^/]+)$/)))
    return upload(routes, publicUrl, req, res, m[1]!);
  if (req.method === 'GET' && (m = url.pathname.match(/^\/v1\/trainer-outputs\/([a-z0-9]+)\/([^/]+)$/)))
    return download(routes, res, m[1]!, m[2]!);

  // API Gateway answers a path or method it has no method for itself.
  const methods = routes.api.routes.filter((r) => r.method === req.method);
  const match = matchPath(
    methods.map((r) => r.path),
    url.pathname,
  );
  if (!match) return gateway(routes, 'MISSING_AUTHENTICATION_TOKEN', res);
  const route = methods.find((r) => r.path === match.path)!;

  const body = await readBody(req, routes.maxBodyBytes ?? 10 * 1024 * 1024);
  if (body === null) return gateway(routes, 'REQUEST_TOO_LARGE', res);
  const event = toEvent(req, url, body, match);
  if (route.authorizer) {
    const refused = await authorizeRequest(routes, route.authorizer, req, url, event);
    if (refused) return gateway(routes, refused, res);
  }
  return reply(res, (await routes.invoke(route.fn, event)) as APIGatewayProxyResult);
}

/** The TOKEN authorizer's verdict: null, with its context on the event, or the gateway response that refuses. */
async function authorizeRequest(
  routes: GatewayRoutes,
  authorizer: NonNullable<LocalRoute['authorizer']>,
  req: http.IncomingMessage,
  url: URL,
  event: APIGatewayProxyEvent,
): Promise<string | null> {
  const token = req.headers.authorization;
  // A TOKEN authorizer is not called without its identity source.
  if (!token) return 'UNAUTHORIZED';
  let result: AuthorizerResult;
  try {
    const methodArn = `${LOCAL_REST_API_ARN}/${req.method}${url.pathname}`;
    result = (await routes.invoke(authorizer, { type: 'TOKEN', authorizationToken: token, methodArn })) as AuthorizerResult;
  } catch (e) {
    return (e as Error).message === 'Unauthorized' ? 'UNAUTHORIZED' : 'AUTHORIZER_FAILURE';
  }
  if (!result.policyDocument?.Statement?.some((s) => s.Effect === 'Allow')) return 'ACCESS_DENIED';
  event.requestContext.authorizer = { ...result.context, principalId: result.principalId };
  return null;
}

function gateway(routes: GatewayRoutes, type: string, res: http.ServerResponse) {
  const r = routes.api.gatewayResponses[type] ?? DEFAULT_RESPONSES[type]!;
  res.writeHead(r.status, r.headers).end(r.body);
}

/** Streams a trainer's output file into S3 under an unguessable key. */
async function upload(routes: GatewayRoutes, publicUrl: string, req: http.IncomingMessage, res: http.ServerResponse, filename: string) {
  const id = randomBytes(16).toString('hex');
  const name = decodeURIComponent(filename).replace(/[^A-Za-z0-9._-]/g, '_');
  await new Upload({
    client: routes.storage.s3,
    params: {
      Bucket: routes.storage.bucket,
      Key: `trainer-outputs/${id}/${name}`,
      Body: req,
      ContentType: req.headers['content-type'] ?? 'application/octet-stream',
    },
    partSize: 8 * 1024 * 1024,
  }).done();
  const location = `${publicUrl}/v1/trainer-outputs/${id}/${name}`;
  res.writeHead(201, { location, 'content-type': 'application/json' }).end(JSON.stringify({ url: location }));
}

async function download(routes: GatewayRoutes, res: http.ServerResponse, id: string, name: string) {
  const { storage } = routes;
  try {
    const out = await (storage.reader ?? storage.s3).send(
      new GetObjectCommand({ Bucket: storage.bucket, Key: `trainer-outputs/${id}/${name}` }),
    );
    res.writeHead(200, {
      'content-type': out.ContentType ?? 'application/octet-stream',
      'content-length': String(out.ContentLength ?? ''),
    });
    (out.Body as Readable).pipe(res);
  } catch {
    send(res, 404, { detail: 'not found', status: 404 });
  }
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

function toEvent(
  req: http.IncomingMessage,
  url: URL,
  body: Buffer,
  route: { path: string; pathParameters: Record<string, string> },
): APIGatewayProxyEvent {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
  const query = Object.fromEntries(url.searchParams.entries());
  const params = Object.keys(route.pathParameters).length ? route.pathParameters : null;
  return {
    httpMethod: req.method ?? 'GET',
    path: url.pathname,
    resource: route.path,
    headers,
    multiValueHeaders: {},
    queryStringParameters: Object.keys(query).length ? query : null,
    multiValueQueryStringParameters: null,
    pathParameters: params,
    stageVariables: null,
    body: body.length ? body.toString('utf8') : null,
    isBase64Encoded: false,
    requestContext: {
      requestId: randomBytes(8).toString('hex'),
      resourcePath: route.path,
      httpMethod: req.method ?? 'GET',
      stage: 'prod',
      authorizer: {},
    } as never,
  };
}

function reply(res: http.ServerResponse, out: APIGatewayProxyResult) {
  res.writeHead(out.statusCode, (out.headers ?? {}) as http.OutgoingHttpHeaders).end(out.body);
}

function send(res: http.ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
