/**
 * The authorising proxy in front of dynalite and of the Step Functions / Secrets Manager /
 * Lambda endpoint, and the decision behind the gate inside s3rver's worker (`decideS3`): each
 * request is authenticated (SigV4, ./sigv4.ts), its IAM action and resource worked out
 * (./requests.ts), the caller's policies from the template evaluated (./policy.ts), and only what
 * AWS would allow goes on; refusals answer as each service answers them.
 *
 * Checks of our own rather than the servers': s3rver does not verify V4 signatures at all and
 * dynalite only checks that one is present, and neither knows principals. JSON bodies (small)
 * are buffered through the proxy; S3's (gigabytes of weights) never leave s3rver's thread.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServer } from '../endpoint.ts';
import { evaluate, type Decision, type Statement } from './policy.ts';
import {
  applicationAutoScalingNeeds,
  cloudWatchNeeds,
  dynamoDbNeeds,
  lambdaNeeds,
  s3Needs,
  sagemakerNeeds,
  sagemakerRuntimeNeeds,
  secretsManagerNeeds,
  stepFunctionsNeeds,
  type Needed,
  type S3Request,
  type Where,
} from './requests.ts';
import { verifySigV4, type Verified } from './sigv4.ts';

export interface Principal {
  /** The function's handler name, `state-machine`, `build`, or `operator` (local mode itself). */
  name: string;
  /** Role logical id in the template; the operator has none and may do anything. */
  role: string | null;
  accessKeyId: string;
  secretAccessKey: string;
  statements: Statement[];
}

export interface Denial {
  principal: string;
  action: string;
  resource: string;
  decision: Decision;
}

export interface Authority extends Where {
  principals: ReadonlyMap<string, Principal>;
  /** Every refused call, in order (the README's findings come from here). */
  denials: Denial[];
  log: (line: string) => void;
  onDenial?: (d: Denial) => void;
}

export type ServiceKind = 'dynamodb' | 'endpoint';

const JSON_SERVICES: Record<string, { signing: string; needs: (op: string, body: Record<string, unknown>, w: Where) => Promise<Needed[]>; type: string }> = {
  DynamoDB_20120810: { signing: 'dynamodb', needs: dynamoDbNeeds, type: 'application/x-amz-json-1.0' },
  AWSStepFunctions: { signing: 'states', needs: (op, b) => stepFunctionsNeeds(op, b), type: 'application/x-amz-json-1.0' },
  secretsmanager: { signing: 'secretsmanager', needs: secretsManagerNeeds, type: 'application/x-amz-json-1.1' },
  SageMaker: { signing: 'sagemaker', needs: sagemakerNeeds, type: 'application/x-amz-json-1.1' },
  AnyScaleFrontendService: { signing: 'application-autoscaling', needs: applicationAutoScalingNeeds, type: 'application/x-amz-json-1.1' },
  GraniteServiceVersion20100801: { signing: 'monitoring', needs: cloudWatchNeeds, type: 'application/x-amz-json-1.0' },
};
const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;
const ASYNC_INVOCATIONS_PATH = /^\/endpoints\/([^/]+)\/async-invocations$/;

/** Local mode's loopback HTTP stands in for TLS (the bucket policy denies anything else). */
const CONTEXT = { 'aws:SecureTransport': 'true' };

export function authorize(auth: Authority, principal: Principal, needs: Needed[]): Denial | null {
  if (principal.role === null) return null;
  for (const n of needs) {
    const decision = evaluate(principal.statements, { ...n, context: { ...CONTEXT, ...n.context } });
    if (decision !== 'Allow') {
      const denial = { principal: principal.name, action: n.action, resource: n.resource, decision };
      auth.denials.push(denial);
      auth.onDenial?.(denial);
      return denial;
    }
  }
  return null;
}

export function deniedMessage(auth: Authority, principal: Principal, d: Denial): string {
  const why = d.decision === 'ExplicitDeny' ? 'with an explicit deny in a policy' : `because no identity-based policy allows the ${d.action} action`;
  return `User: arn:aws:sts::${auth.account}:assumed-role/${principal.role}/${principal.name} is not authorized to perform: ${d.action} on resource: ${d.resource} ${why}`;
}

export async function startAuthProxy(kind: ServiceKind, upstream: string, auth: Authority): Promise<{ url: string; close: () => Promise<void> }> {
  const target = new URL(upstream);
  const server = http.createServer((req, res) => {
    handleJson(auth, target, req, res).catch((e) => {
      auth.log(`local IAM proxy (${kind}): ${(e as Error).message}`);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ __type: 'InternalFailure', message: 'local IAM proxy failed' }));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
}

function principalOf(auth: Authority, v: Verified): Principal | undefined {
  return v.ok ? auth.principals.get(v.accessKeyId) : undefined;
}
const secretOf = (auth: Authority) => (id: string) => auth.principals.get(id)?.secretAccessKey;

// ---- S3 ----------------------------------------------------------------------------------------

/** What the gate inside the S3 worker does with one request (see ../storage-host.cjs). */
export interface S3Decision {
  /** Answer this S3 error instead of serving the request. */
  refuse?: { status: number; code: string; message: string };
  /** Without s3:ListBucket, S3 answers a missing key with 403, not 404 (HeadObject, GetObject). */
  hideMissing?: boolean;
}

/**
 * S3 is authorised inside s3rver's own worker, by a gate in front of its routes that asks this
 * function (one message per request, headers only): object bytes then flow from s3rver to the
 * client directly, never through this thread or a second socket.
 */
export async function decideS3(auth: Authority, incoming: S3Request): Promise<S3Decision> {
  const v = await verifySigV4(incoming, secretOf(auth));
  if (!v.ok) {
    // Anonymous requests are refused as the bucket's public-access block refuses them.
    const [status, code] =
      v.code === 'MissingAuthentication' ? [403, 'AccessDenied']
      : v.code === 'UnknownAccessKey' ? [403, 'InvalidAccessKeyId']
      : v.code === 'Expired' ? [403, 'AccessDenied']
      : v.code === 'Malformed' ? [400, 'AuthorizationQueryParametersError']
      : [403, 'SignatureDoesNotMatch'];
    return { refuse: { status, code, message: v.code === 'MissingAuthentication' ? 'Access Denied' : v.message } };
  }
  const principal = principalOf(auth, v)!;
  const needs = await s3Needs(incoming, auth);
  const denial = authorize(auth, principal, needs);
  if (denial) return { refuse: { status: 403, code: 'AccessDenied', message: deniedMessage(auth, principal, denial) } };
  const objectRead = needs[0]?.action === 's3:GetObject' && needs.length === 1;
  if (!objectRead || principal.role === null) return {};
  const bucket = needs[0]!.resource.replace(/^arn:aws:s3:::([^/]+)\/.*$/, '$1');
  const mayList = evaluate(principal.statements, { action: 's3:ListBucket', resource: `arn:aws:s3:::${bucket}`, context: CONTEXT }) === 'Allow';
  return { hideMissing: !mayList };
}

// ---- JSON protocols and Lambda Invoke ---------------------------------------------------------

async function handleJson(auth: Authority, target: URL, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const body = await readAll(req);
  const path = new URL(req.url ?? '/', 'http://local');
  const invoke = req.method === 'POST' ? INVOKE_PATH.exec(path.pathname) : null;
  const runtime = req.method === 'POST' ? ASYNC_INVOCATIONS_PATH.exec(path.pathname) : null;
  const amzTarget = String(req.headers['x-amz-target'] ?? '');
  const service = JSON_SERVICES[amzTarget.split('.')[0]!];
  const fail = (status: number, type: string, message: string) =>
    invoke || runtime
      ? send(res, status, { 'content-type': 'application/json', 'x-amzn-errortype': type }, { Type: 'User', Message: message, message })
      : send(res, status, { 'content-type': service?.type ?? 'application/x-amz-json-1.0' }, { __type: type, message, Message: message });

  const v = await verifySigV4({ method: req.method ?? 'POST', url: req.url ?? '/', headers: req.headers, body }, secretOf(auth));
  if (!v.ok) {
    const forbidden = invoke || runtime ? 403 : 400;
    if (v.code === 'MissingAuthentication') return fail(forbidden, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
    if (v.code === 'UnknownAccessKey') return fail(forbidden, 'UnrecognizedClientException', 'The security token included in the request is invalid.');
    return fail(forbidden, 'InvalidSignatureException', v.message);
  }
  const principal = principalOf(auth, v)!;
  let needs: Needed[];
  if (invoke) {
    needs = await lambdaNeeds(decodeURIComponent(invoke[1]!), path.searchParams.get('Qualifier'), auth);
  } else if (runtime && v.service === 'sagemaker') {
    needs = await sagemakerRuntimeNeeds(decodeURIComponent(runtime[1]!), auth);
  } else if (service && v.service === service.signing) {
    needs = await service.needs(amzTarget.slice(amzTarget.indexOf('.') + 1), parseJson(body), auth);
  } else {
    // Unknown targets (and a signature for another service) go on to the server, which refuses them.
    needs = [];
  }
  const denial = authorize(auth, principal, needs);
  if (denial) {
    const type = amzTarget.startsWith('DynamoDB') ? 'com.amazon.coral.service#AccessDeniedException' : 'AccessDeniedException';
    return fail(invoke || runtime ? 403 : 400, type, deniedMessage(auth, principal, denial));
  }
  await forward(target, req, res, body);
}

function parseJson(body: Buffer): Record<string, unknown> {
  try {
    return body.length ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

// ---- plumbing ---------------------------------------------------------------------------------

/** Sends the (buffered) request on to the real server and its answer back. */
function forward(target: URL, req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 500, answer.headers);
      answer.pipe(res);
      answer.on('end', resolve).on('error', reject);
    });
    up.on('error', reject);
    up.end(body);
  });
}

async function readAll(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

function send(res: http.ServerResponse, status: number, headers: Record<string, string>, payload: unknown): void {
  const text = JSON.stringify(payload);
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(text) }).end(text);
}
