/**
 * HTTP client for user-supplied URLs, over node's http/https with the guarded agent. Global
 * fetch is not used: its connect-time lookup cannot be hooked without undici.
 *
 * Every hop passes the egress guard twice (URL syntax, then the resolved address at connect
 * time); redirects are followed only when asked, at most 3. URLs in errors are redacted to
 * origin + path, because presigned URLs and callback secrets live in query strings.
 */
import http from 'node:http';
import https from 'node:https';
import { pipeline, Readable, Transform } from 'node:stream';
import { checkUrlSyntax, EgressError, guardedAgent, type LookupFunction } from '#shared/egress';

export type HttpErrorCode = 'TIMEOUT' | 'EGRESS_REFUSED' | 'TOO_LARGE' | 'NETWORK';

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly code: HttpErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** A Readable body cannot be replayed: a redirect that must resend it is returned as is. */
  body?: string | Buffer | Readable;
  /** Connect + response headers. @default 30000 */
  timeoutMs?: number;
  /** Longest silence while the body streams. @default timeoutMs */
  idleTimeoutMs?: number;
  /** CIDRs that may be reached although private (local mode: loopback). @default [] */
  allow?: string[];
  /** Redirects to follow, each re-checked by the guard; 0 returns a 3xx as is. At most 3. @default 0 */
  maxRedirects?: number;
  /** Response body cap; `request` defaults to 10 MiB, `requestStream` to none. */
  maxResponseBytes?: number;
  /** Replaces DNS resolution (tests). */
  lookup?: LookupFunction;
}

export interface HttpStreamResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  stream: Readable;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** Origin + path: no credentials, query string or fragment. */
export function redactUrl(url: string | URL): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 3;
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_BUFFERED = 10 * 1024 * 1024;

/** Sends a request and streams the response body; the caller must consume or destroy `stream`. */
export async function requestStream(url: string, opts: RequestOptions = {}): Promise<HttpStreamResponse> {
  const hops = Math.min(Math.max(opts.maxRedirects ?? 0, 0), MAX_REDIRECTS);
  let current = url;
  let method = (opts.method ?? 'GET').toUpperCase();
  let body = opts.body;
  let headers = { ...opts.headers };
  for (let hop = 0; ; hop++) {
    const res = await sendHop(current, { ...opts, method, body, headers });
    const location = res.headers.location;
    if (!REDIRECTS.has(res.status) || !location || hop >= hops) return res;
    const next = URL.canParse(location, current) ? new URL(location, current) : null;
    if (!next) return res;
    const keepsBody = res.status === 307 || res.status === 308;
    if (keepsBody && body instanceof Readable) return res;
    res.stream.resume();
    if (!keepsBody && method !== 'HEAD') {
      method = 'GET';
      body = undefined;
      headers = withoutBodyHeaders(headers);
    }
    // Credentials meant for one origin must not follow a redirect to another.
    if (next.origin !== new URL(current).origin) headers = withoutHeaders(headers, ['authorization', 'cookie']);
    current = next.href;
  }
}

/** Sends a request and buffers the response body (capped by maxResponseBytes, default 10 MiB). */
export async function request(url: string, opts: RequestOptions = {}): Promise<HttpResponse> {
  const res = await requestStream(url, { ...opts, maxResponseBytes: opts.maxResponseBytes ?? DEFAULT_MAX_BUFFERED });
  const chunks: Buffer[] = [];
  for await (const chunk of res.stream) chunks.push(chunk as Buffer);
  return { status: res.status, headers: res.headers, body: Buffer.concat(chunks) };
}

const withoutHeaders = (h: Record<string, string>, names: string[]) =>
  Object.fromEntries(Object.entries(h).filter(([k]) => !names.includes(k.toLowerCase())));
const withoutBodyHeaders = (h: Record<string, string>) =>
  withoutHeaders(h, ['content-type', 'content-length', 'content-encoding', 'transfer-encoding']);

function toHttpError(err: unknown, where: string): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof EgressError) return new HttpError('EGRESS_REFUSED', `${where}: ${err.detail}`);
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'EGRESS_REFUSED') return new HttpError('EGRESS_REFUSED', `${where}: ${e.message}`);
  // Node's own messages name the address and errno, never the request path or query.
  return new HttpError('NETWORK', `${where}: ${e?.message ?? String(err)}`);
}

/** One hop: guard, send, and hand back the response once its headers arrived. */
function sendHop(url: string, opts: RequestOptions & { method: string }): Promise<HttpStreamResponse> {
  const where = `${opts.method} ${redactUrl(url)}`;
  return new Promise((resolve, reject) => {
    let target: URL;
    try {
      target = checkUrlSyntax(url, { allow: opts.allow ?? [] });
    } catch (err) {
      return reject(toHttpError(err, where));
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const idleMs = opts.idleTimeoutMs ?? timeoutMs;
    const agent = guardedAgent(opts.allow ?? [], target.protocol as 'http:' | 'https:', opts.lookup);
    const send = target.protocol === 'https:' ? https.request : http.request;
    const req = send(target, { method: opts.method, headers: opts.headers, agent });
    const fail = (err: unknown) => {
      clearTimeout(timer);
      req.destroy();
      reject(toHttpError(err, where));
    };
    const timer = setTimeout(
      () => fail(new HttpError('TIMEOUT', `${where}: no response within ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on('error', fail);
    req.on('response', (res) => {
      clearTimeout(timer);
      req.off('error', fail);
      try {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, stream: guardBody(res, req, where, idleMs, opts.maxResponseBytes) });
      } catch (err) {
        fail(err);
      }
    });
    writeBody(req, opts.body, fail);
  });
}

function writeBody(req: http.ClientRequest, body: RequestOptions['body'], fail: (err: unknown) => void) {
  if (body instanceof Readable) {
    body.on('error', fail);
    body.pipe(req);
  } else {
    req.end(body);
  }
}

/** The response body with the idle timeout and the size cap applied; errors are HttpErrors. */
function guardBody(
  res: http.IncomingMessage,
  req: http.ClientRequest,
  where: string,
  idleMs: number,
  maxBytes: number | undefined,
): Readable {
  const declared = Number(res.headers['content-length']);
  if (maxBytes !== undefined && declared > maxBytes) {
    res.destroy();
    throw new HttpError('TOO_LARGE', `${where}: response declares ${declared} bytes, more than ${maxBytes}`);
  }
  let seen = 0;
  const out = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (maxBytes !== undefined && seen > maxBytes) {
        return done(new HttpError('TOO_LARGE', `${where}: response exceeds ${maxBytes} bytes`));
      }
      done(null, chunk);
    },
  });
  req.setTimeout(idleMs, () => {
    const err = new HttpError('TIMEOUT', `${where}: response body stalled for ${idleMs} ms`);
    out.destroy(err);
    req.destroy(err);
  });
  const broken = (err: unknown) => out.destroy(toHttpError(err, where));
  req.on('error', broken);
  res.on('error', broken);
  // A body cut short must fail, not pass for a complete one.
  res.on('close', () => {
    if (!res.complete) broken(new HttpError('NETWORK', `${where}: connection closed mid-body`));
  });
  // pipeline listens for errors on `out`, so one raised before the caller starts reading is
  // kept for the caller (the stream is errored) instead of crashing the process; it also
  // tears the connection down when the caller destroys `out`.
  pipeline(res, out, () => req.destroy());
  return out;
}
