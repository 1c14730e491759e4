/**
 * One session with a registry: its base URL, the authentication it has negotiated, and each
 * call of the Distribution API through them — answering a 401 challenge once, retrying
 * idempotent calls, turning a refusal into a RegistryError. Names and digests are checked
 * before they go into a URL.
 */
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { Authenticator } from './auth.ts';
import { backoff, discard, readBody, send } from './http.ts';
import { ACCEPTED_TYPES, DIGEST } from './types.ts';
import type { EgressGuard } from '../egress.ts';

/** A registry said no. `code` is the registry's error code (e.g. `BLOB_UNKNOWN`); never carries credentials. */
export class RegistryError extends Error {
  override name = 'RegistryError';
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface Call {
  method: string;
  url: URL;
  scopes: string[];
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  /** Statuses that are answers, not errors. */
  ok: number[];
}

const REPO = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

export class RegistrySession {
  readonly origin: string;

  constructor(
    readonly base: URL,
    private readonly auth: Authenticator,
    readonly timeoutMs: number,
    readonly egress?: EgressGuard,
  ) {
    this.origin = base.origin;
  }

  /** An upload's next URL from its answer; only ever on the registry's own origin. */
  location(res: IncomingMessage): URL {
    const loc = header(res, 'location');
    if (!loc) throw new RegistryError('upload answered without a Location', res.statusCode ?? 0);
    const url = new URL(loc, this.base);
    if (url.origin !== this.origin) throw new RegistryError(`upload Location points to another host (${url.host})`, res.statusCode ?? 0);
    return url;
  }

  /** The API URL of a manifest or blob (`uploads/` for a new upload), the name and reference checked. */
  url(repo: string, kind: 'manifests' | 'blobs', ref: string): URL {
    checkRepo(repo);
    if (kind === 'manifests' && !TAG.test(ref)) checkDigest(ref);
    if (kind === 'blobs' && ref !== 'uploads/') checkDigest(ref);
    return new URL(`/v2/${repo}/${kind}/${ref}`, this.base);
  }

  /** Sends with auth; answers a 401 once; retries idempotent calls on 429/5xx and network errors. */
  async call(c: Call): Promise<IncomingMessage> {
    const replayable = !(c.body instanceof Readable);
    const idempotent = ['GET', 'HEAD'].includes(c.method) || (c.method === 'PUT' && c.url.pathname.includes('/manifests/'));
    let challenged = false;
    for (let attempt = 0; ; attempt++) {
      let res: IncomingMessage;
      try {
        const authorization = await this.auth.header(c.scopes);
        res = await send({ ...c, headers: { ...c.headers, ...(authorization ? { authorization } : {}) }, timeoutMs: this.timeoutMs, lookup: this.egress?.lookup });
      } catch (e) {
        if (!idempotent || attempt >= 2) throw new RegistryError(`${c.method} ${c.url.pathname} failed: ${(e as Error).message}`, 0);
        await backoff(attempt);
        continue;
      }
      const status = res.statusCode ?? 0;
      if (c.ok.includes(status)) return res;
      if (status === 401 && !challenged && replayable) {
        challenged = true;
        discard(res);
        if (await this.auth.challenged(res, c.scopes)) continue;
      }
      if (idempotent && attempt < 2 && (status === 429 || status >= 500)) {
        discard(res);
        await backoff(attempt);
        continue;
      }
      throw await failure(res, c.method, c.url);
    }
  }
}

export const accept = { accept: ACCEPTED_TYPES.join(', ') };
export const pull = (repo: string) => [`repository:${repo}:pull`];
export const push = (repo: string) => [`repository:${repo}:pull,push`];

export function header(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export const contentType = (res: IncomingMessage) => (header(res, 'content-type') ?? '').split(';')[0].trim();

export function checkRepo(repo: string): string {
  if (!REPO.test(repo) || repo.length > 255) throw new RegistryError(`invalid repository name: ${JSON.stringify(repo)}`, 0, 'NAME_INVALID');
  return repo;
}

export function checkDigest(d: string): string {
  if (!DIGEST.test(d)) throw new RegistryError(`invalid reference or digest: ${JSON.stringify(d)}`, 0, 'DIGEST_INVALID');
  return d;
}

/** Builds a RegistryError from the registry's `{errors: [{code, message}]}` body; the path only, no query. */
export async function failure(res: IncomingMessage, method: string, url: URL): Promise<RegistryError> {
  const status = res.statusCode ?? 0;
  let code: string | undefined;
  let detail = res.statusMessage ?? '';
  try {
    const body = JSON.parse((await readBody(res, 64 * 1024)).toString('utf8'));
    const first = body?.errors?.[0];
    if (typeof first?.code === 'string') code = first.code;
    if (typeof first?.message === 'string') detail = first.message;
  } catch {
    // Not JSON (a HEAD, a proxy's HTML page): status and reason phrase must do.
  }
  const what = code ? `${code}: ${detail}` : detail;
  return new RegistryError(`${method} ${url.pathname} answered ${status}${what ? ` (${what})` : ''}`, status, code);
}
