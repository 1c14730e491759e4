/**
 * One HTTP server on 127.0.0.1 speaking the wire protocols the SDK clients use for Step
 * Functions (JSON 1.0), Secrets Manager (JSON 1.1), Lambda Invoke (REST JSON), and for the
 * stand-ins of SageMaker (JSON 1.1), Application Auto Scaling (JSON 1.1), CloudWatch (JSON 1.0)
 * and SageMaker Runtime's InvokeEndpointAsync (REST JSON). Request bodies are never logged:
 * they carry task tokens and secrets.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ZodError } from 'zod';
import { AwsError } from './errors.ts';
import { invokeLambda, type LocalLambda } from './lambda/invoke.ts';

type Operation = (body: unknown) => unknown;

/** A REST operation: the path's parameters, the headers and the body in; status, headers and body out. */
export type RestOperation = (
  params: string[],
  headers: Record<string, string | string[] | undefined>,
  body: string,
) => Promise<{ status: number; headers: Record<string, string>; body: string }>;

export interface EndpointOptions {
  stepFunctions: Record<string, Operation>;
  secretsManager: Record<string, Operation>;
  lambdas: Record<string, LocalLambda>;
  sagemaker?: Record<string, Operation>;
  applicationAutoScaling?: Record<string, Operation>;
  cloudWatch?: Record<string, Operation>;
  /** SageMaker Runtime's InvokeEndpointAsync (`POST /endpoints/{EndpointName}/async-invocations`). */
  invokeEndpointAsync?: RestOperation;
  log: (line: string) => void;
}

const MAX_BODY = 8 * 1024 * 1024;
const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;
export const ASYNC_INVOCATIONS_PATH = /^\/endpoints\/([^/]+)\/async-invocations$/;
type JsonApi = 'stepFunctions' | 'secretsManager' | 'sagemaker' | 'applicationAutoScaling' | 'cloudWatch';
const JSON_TARGETS: Record<string, { prefix: string; contentType: string; api: JsonApi }> = {
  AWSStepFunctions: { prefix: 'AWSStepFunctions.', contentType: 'application/x-amz-json-1.0', api: 'stepFunctions' },
  secretsmanager: { prefix: 'secretsmanager.', contentType: 'application/x-amz-json-1.1', api: 'secretsManager' },
  SageMaker: { prefix: 'SageMaker.', contentType: 'application/x-amz-json-1.1', api: 'sagemaker' },
  AnyScaleFrontendService: { prefix: 'AnyScaleFrontendService.', contentType: 'application/x-amz-json-1.1', api: 'applicationAutoScaling' },
  GraniteServiceVersion20100801: { prefix: 'GraniteServiceVersion20100801.', contentType: 'application/x-amz-json-1.0', api: 'cloudWatch' },
};

export async function startEndpoint(opts: EndpointOptions): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    handle(opts, req, res).catch((err) => {
      const e = asAwsError(err);
      if (e.status >= 500) opts.log(`local AWS endpoint: ${e.message}`);
      if (!res.headersSent) send(res, e.status, { 'content-type': 'application/json' }, JSON.stringify({ __type: e.type, message: e.message }));
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => closeServer(server) };
}

export async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
  // SDK clients keep idle sockets open; without this, close() waits for them to time out.
  server.closeAllConnections();
  await closed;
}

async function handle(opts: EndpointOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req);
  const path = new URL(req.url ?? '/', 'http://local').pathname;
  const invoke = req.method === 'POST' ? INVOKE_PATH.exec(path) : null;
  if (invoke) return handleInvoke(opts, req, res, decodeURIComponent(invoke[1]!), body);
  const asyncInvocation = req.method === 'POST' && opts.invokeEndpointAsync ? ASYNC_INVOCATIONS_PATH.exec(path) : null;
  if (asyncInvocation) return handleRest(opts.invokeEndpointAsync!, [decodeURIComponent(asyncInvocation[1]!)], req, res, body);

  const target = String(req.headers['x-amz-target'] ?? '');
  const service = JSON_TARGETS[target.split('.')[0]!];
  if (req.method !== 'POST' || !service) {
    return send(res, 404, { 'content-type': 'application/json' }, JSON.stringify({ __type: 'UnknownOperationException', message: 'Unknown operation' }));
  }
  const respond = (status: number, payload: unknown) => send(res, status, { 'content-type': service.contentType }, JSON.stringify(payload));
  const operation = opts[service.api]?.[target.slice(service.prefix.length)];
  if (!operation) return respond(400, { __type: 'UnknownOperationException', message: `Unknown operation ${target}` });
  try {
    respond(200, await operation(body ? JSON.parse(body) : {}));
  } catch (err) {
    const e = asAwsError(err);
    if (e.status >= 500) opts.log(`${target} failed: ${(err as Error).message}`);
    respond(e.status, { __type: e.type, message: e.message });
  }
}

async function handleInvoke(opts: EndpointOptions, req: IncomingMessage, res: ServerResponse, fn: string, body: string) {
  try {
    const type = req.headers['x-amz-invocation-type'];
    const out = await invokeLambda(opts.lambdas, fn, Array.isArray(type) ? type[0] : type, body, opts.log);
    send(res, out.status, out.headers, out.body);
  } catch (err) {
    const e = asAwsError(err);
    const headers = { 'content-type': 'application/json', 'x-amzn-errortype': e.type };
    send(res, e.status, headers, JSON.stringify({ Type: 'User', message: e.message }));
  }
}

async function handleRest(operation: RestOperation, params: string[], req: IncomingMessage, res: ServerResponse, body: string) {
  try {
    const out = await operation(params, req.headers, body);
    send(res, out.status, out.headers, out.body);
  } catch (err) {
    const e = asAwsError(err);
    send(res, e.status, { 'content-type': 'application/json', 'x-amzn-errortype': e.type }, JSON.stringify({ message: e.message }));
  }
}

function asAwsError(err: unknown): AwsError {
  if (err instanceof AwsError) return err;
  if (err instanceof ZodError) return new AwsError('ValidationException', err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  if (err instanceof SyntaxError) return new AwsError('SerializationException', 'Request body is not JSON');
  return new AwsError('InternalFailure', (err as Error)?.message ?? 'internal error', 500);
}

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: string): void {
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) }).end(body);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new AwsError('RequestEntityTooLargeException', 'request body too large', 413);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
