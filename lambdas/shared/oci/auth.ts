/**
 * Registry authentication: anonymous, Basic (ECR answers `WWW-Authenticate: Basic`), or the
 * Bearer token exchange of the distribution spec (Docker Hub, r8.im, GHCR, distribution's
 * token auth): on a 401 the registry names a realm, service and scope; a token for the scopes
 * a call needs is fetched from the realm (with Basic credentials if any) and cached until it
 * expires.
 */
import { EgressError, type EgressGuard } from '../egress.ts';
import type { IncomingMessage } from 'node:http';
import * as z from '../zod.ts';
import { backoff, readBody, send } from './http.ts';

export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

export function parseChallenge(header: string | undefined): Challenge | null {
  const m = /^\s*(basic|bearer)\b\s*(.*)$/i.exec(header ?? '');
  if (!m) return null;
  const params: Record<string, string> = {};
  for (const p of m[2].matchAll(/([a-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/gi)) {
    params[p[1].toLowerCase()] = (p[2] ?? p[3]).replace(/\\(.)/g, '$1');
  }
  return { scheme: m[1].toLowerCase() as Challenge['scheme'], params };
}

const TokenResponse = z.object({
  token: z.optional(z.string().check(z.minLength(1))),
  access_token: z.optional(z.string().check(z.minLength(1))),
  expires_in: z.optional(z.number().check(z.positive())),
});

/** A token is refreshed this long before it expires, so a request never starts with a stale one. */
const EXPIRY_MARGIN_MS = 20_000;

export class Authenticator {
  private scheme: 'anonymous' | 'basic' | 'bearer' = 'anonymous';
  private realm?: URL;
  private service?: string;
  private readonly tokens = new Map<string, { value: string; expires: number }>();

  constructor(
    private readonly credentials: Credentials | undefined,
    private readonly registry: URL,
    private readonly timeoutMs: number,
    private readonly egress?: EgressGuard,
  ) {}

  /** The Authorization header for a call needing `scopes` (fetches a token when due). */
  async header(scopes: string[]): Promise<string | undefined> {
    if (this.scheme === 'basic') return this.basic();
    if (this.scheme !== 'bearer') return undefined;
    for (const [key, t] of this.tokens) {
      if (t.expires - EXPIRY_MARGIN_MS > Date.now() && scopes.every((s) => covers(key, s))) return `Bearer ${t.value}`;
    }
    return `Bearer ${await this.fetchToken(scopes)}`;
  }

  /** Learns the scheme from a 401; true when asking again may now succeed. */
  async challenged(res: IncomingMessage, scopes: string[]): Promise<boolean> {
    const c = parseChallenge(res.headers['www-authenticate']);
    if (!c) return false;
    if (c.scheme === 'basic') {
      const retry = this.scheme !== 'basic' && !!this.credentials;
      this.scheme = 'basic';
      return retry;
    }
    this.scheme = 'bearer';
    this.realm = this.checkRealm(c.params.realm);
    this.service = c.params.service;
    // The registry may name a scope the caller did not think of; ask for both.
    const extra = c.params.scope && !scopes.includes(c.params.scope) ? [c.params.scope] : [];
    // A token the registry just refused must not be offered again.
    for (const key of [...this.tokens.keys()]) if (scopes.every((s) => covers(key, s))) this.tokens.delete(key);
    await this.fetchToken([...scopes, ...extra]);
    return true;
  }

  private basic(): string | undefined {
    if (!this.credentials) return undefined;
    const { username, password } = this.credentials;
    return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  private checkRealm(realm: string | undefined): URL {
    let url: URL;
    try {
      url = new URL(realm ?? '');
    } catch {
      throw new Error(`registry ${this.registry.host} sent an unusable token realm`);
    }
    // Credentials go to the realm: never in clear text unless the registry itself is plain http.
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.registry.protocol === 'http:')) {
      throw new Error(`registry ${this.registry.host} sent a token realm that is not https`);
    }
    try {
      this.egress?.check(url);
    } catch (e) {
      if (e instanceof EgressError) throw new EgressError(`registry ${this.registry.host} named a token realm whose ${e.detail}`);
      throw e;
    }
    return url;
  }

  private async fetchToken(scopes: string[]): Promise<string> {
    const url = new URL(this.realm!);
    if (this.service) url.searchParams.set('service', this.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const auth = this.basic();
    for (let attempt = 0; ; attempt++) {
      let res: IncomingMessage | undefined;
      try {
        res = await send({ method: 'GET', url, headers: auth ? { authorization: auth } : {}, timeoutMs: this.timeoutMs, lookup: this.egress?.lookup });
        const body = await readBody(res, 64 * 1024);
        if (res.statusCode === 200) return this.remember(scopes.join(' '), body);
        if (res.statusCode !== 429 && (res.statusCode ?? 0) < 500) break;
      } catch (e) {
        if (attempt >= 2) throw new Error(`token request to ${url.host} failed: ${(e as Error).message}`);
      }
      if (attempt >= 2) break;
      await backoff(attempt);
    }
    throw new TokenError(`token request to ${url.host} was refused (check the registry credentials)`);
  }

  private remember(key: string, body: Buffer): string {
    const parsed = TokenResponse.safeParse(JSON.parse(body.toString('utf8') || '{}'));
    const value = parsed.success ? (parsed.data.token ?? parsed.data.access_token) : undefined;
    if (!value) throw new TokenError(`token realm ${this.realm!.host} answered without a token`);
    // The spec's default lifetime when the realm does not say is 60 s.
    const expires = Date.now() + (parsed.data!.expires_in ?? 60) * 1000;
    this.tokens.set(key, { value, expires });
    return value;
  }
}

/** A push token also grants pull: no second token exchange for reads of the same repository. */
function covers(key: string, scope: string): boolean {
  const granted = key.split(' ');
  return granted.includes(scope) || (scope.endsWith(':pull') && granted.includes(`${scope},push`));
}

export class TokenError extends Error {
  override name = 'TokenError';
}
