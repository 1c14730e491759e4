/**
 * SigV4 verification, as AWS authenticates a request: the signature (in the Authorization
 * header, or in a presigned URL's query) is recomputed with the signer the SDK itself uses,
 * @smithy/signature-v4, from the principal's secret key and exactly the headers the client
 * signed, and compared in constant time. Presigned URLs are refused once expired.
 *
 * Not checked: the payload hash of S3 bodies (the proxy streams them; the signed
 * `x-amz-content-sha256` header stands in for it). JSON bodies are hashed.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Checksum, HttpRequest, SourceData } from '@smithy/types';

/** The signer's hash, on node:crypto (HMAC when given a key). */
class Sha256 implements Checksum {
  private readonly hash;
  constructor(secret?: SourceData) {
    this.hash = secret ? createHmac('sha256', toBuffer(secret)) : createHash('sha256');
  }
  update(data: Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return this.hash.digest();
  }
  reset(): void {
    throw new Error('not supported');
  }
}
const toBuffer = (d: SourceData) => (typeof d === 'string' ? Buffer.from(d) : Buffer.from(d as Uint8Array));

export interface IncomingSigned {
  method: string;
  /** Path and query exactly as received. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** The body when the caller buffered it (JSON protocols); S3 sends its hash in a header. */
  body?: Buffer;
}

export type Verified =
  | { ok: true; accessKeyId: string; service: string; region: string; presigned: boolean }
  | { ok: false; code: 'MissingAuthentication' | 'UnknownAccessKey' | 'SignatureDoesNotMatch' | 'Expired' | 'Malformed'; message: string; accessKeyId?: string };

interface Parsed {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
  expires?: number;
}

const MAX_SKEW_MS = 15 * 60 * 1000;
const AUTH_QUERY = ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature'];

export async function verifySigV4(req: IncomingSigned, secretOf: (accessKeyId: string) => string | undefined, now = new Date()): Promise<Verified> {
  const url = new URL(req.url, 'http://local');
  const presigned = url.searchParams.has('X-Amz-Signature');
  const parsed = presigned ? parseQuery(url.searchParams) : parseHeader(String(req.headers.authorization ?? ''), header(req, 'x-amz-date'));
  if (!parsed) {
    return req.headers.authorization || presigned
      ? { ok: false, code: 'Malformed', message: 'The authorization header or query is malformed' }
      : { ok: false, code: 'MissingAuthentication', message: 'The request carries no signature' };
  }
  const secret = secretOf(parsed.accessKeyId);
  if (secret === undefined) {
    return { ok: false, code: 'UnknownAccessKey', message: 'The AWS Access Key Id you provided does not exist in our records.', accessKeyId: parsed.accessKeyId };
  }
  const signingDate = fromLongDate(parsed.date);
  if (Number.isNaN(signingDate.getTime())) return { ok: false, code: 'Malformed', message: 'X-Amz-Date is not an ISO 8601 long date' };
  if (presigned ? now.getTime() > signingDate.getTime() + (parsed.expires ?? 0) * 1000 : Math.abs(now.getTime() - signingDate.getTime()) > MAX_SKEW_MS) {
    return { ok: false, code: 'Expired', message: presigned ? 'Request has expired' : 'Signature expired: the request time is too far from the server time', accessKeyId: parsed.accessKeyId };
  }

  const signer = new SignatureV4({
    credentials: { accessKeyId: parsed.accessKeyId, secretAccessKey: secret, sessionToken: undefined },
    region: parsed.region,
    service: parsed.service,
    sha256: Sha256,
    // S3 signs the path as sent; every other service escapes it once more.
    uriEscapePath: parsed.service !== 's3',
    applyChecksum: false,
  });
  const request = toHttpRequest(req, url, parsed, presigned);
  const expected = presigned ? await presignedSignature(signer, request, parsed, signingDate) : await headerSignature(signer, request, parsed, signingDate);
  const a = Buffer.from(expected);
  const b = Buffer.from(parsed.signature);
  if (a.length !== b.length || !timingSafeEqual(a, b)) {
    return { ok: false, code: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided. Check your key and signing method.', accessKeyId: parsed.accessKeyId };
  }
  return { ok: true, accessKeyId: parsed.accessKeyId, service: parsed.service, region: parsed.region, presigned };
}

function header(req: IncomingSigned, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function parseHeader(auth: string, date: string | undefined): Parsed | null {
  const m = /^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(auth.trim());
  if (!m || !date) return null;
  const scope = parseCredential(m[1]!);
  return scope && { ...scope, date, signedHeaders: m[2]!.split(';'), signature: m[3]! };
}

function parseQuery(q: URLSearchParams): Parsed | null {
  if (q.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return null;
  const scope = parseCredential(q.get('X-Amz-Credential') ?? '');
  const date = q.get('X-Amz-Date');
  const expires = Number(q.get('X-Amz-Expires'));
  if (!scope || !date || !Number.isFinite(expires)) return null;
  return { ...scope, date, expires, signedHeaders: (q.get('X-Amz-SignedHeaders') ?? '').split(';'), signature: q.get('X-Amz-Signature') ?? '' };
}

/** `<key id>/<yyyymmdd>/<region>/<service>/aws4_request` */
function parseCredential(credential: string) {
  const [accessKeyId, , region, service, terminal] = credential.split('/');
  if (!accessKeyId || !region || !service || terminal !== 'aws4_request') return null;
  return { accessKeyId, region, service };
}

const fromLongDate = (d: string) => new Date(d.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));

function toHttpRequest(req: IncomingSigned, url: URL, parsed: Parsed, presigned: boolean): HttpRequest {
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) {
    if (presigned && AUTH_QUERY.includes(k)) continue;
    const prev = query[k];
    query[k] = prev === undefined ? v : [prev, v].flat();
  }
  const headers: Record<string, string> = {};
  for (const name of parsed.signedHeaders) {
    const v = header(req, name);
    if (v !== undefined) headers[name] = v;
  }
  const rawPath = req.url.split('?')[0] || '/';
  return { method: req.method, protocol: 'http:', hostname: url.hostname, path: rawPath, query, headers, body: req.body } as HttpRequest;
}

async function headerSignature(signer: SignatureV4, request: HttpRequest, parsed: Parsed, signingDate: Date): Promise<string> {
  delete request.headers['x-amz-date']; // the signer sets it from signingDate
  const signed = await signer.sign(request, {
    signingDate,
    signingRegion: parsed.region,
    signingService: parsed.service,
    signableHeaders: new Set(parsed.signedHeaders),
    unsignableHeaders: new Set(),
  });
  const auth = String(signed.headers.authorization ?? signed.headers.Authorization ?? '');
  return /Signature=([0-9a-f]{64})/.exec(auth)?.[1] ?? '';
}

async function presignedSignature(signer: SignatureV4, request: HttpRequest, parsed: Parsed, signingDate: Date): Promise<string> {
  // Presigned S3 URLs never sign the payload.
  request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  const signed = await signer.presign(request, {
    signingDate,
    expiresIn: parsed.expires,
    signingRegion: parsed.region,
    signingService: parsed.service,
    signableHeaders: new Set(parsed.signedHeaders),
    unsignableHeaders: new Set(['x-amz-content-sha256']),
    unhoistableHeaders: new Set(['x-amz-content-sha256']),
  });
  return String(signed.query?.['X-Amz-Signature'] ?? '');
}
