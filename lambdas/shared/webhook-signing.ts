/**
 * Standard Webhooks signatures (what Replicate uses): HMAC-SHA256 over
 * `${id}.${timestamp}.${body}` keyed with the base64 part of a `whsec_` secret. Each owner has
 * its own secret, derived from the service's master key (ownerWebhookSecret).
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

const PREFIX = 'whsec_';

function secretKey(secret: string): Buffer {
  const key = Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, 'base64');
  if (key.length === 0) throw new Error('webhook secret must be whsec_ followed by base64');
  return key;
}

function hmac(secret: string, id: string, timestampSeconds: number, body: string): Buffer {
  return createHmac('sha256', secretKey(secret)).update(`${id}.${timestampSeconds}.${body}`).digest();
}

/** HKDF's salt and the prefix of its info: public constants that bind the derived keys to this one use. */
const OWNER_KEY_SALT = 'dreambooth-api';
const OWNER_KEY_INFO = 'dreambooth webhook signing v1:';

/**
 * The `whsec_` secret that signs `owner`'s webhooks: HKDF-SHA256 of the master key, so one
 * owner's secret tells nothing about another's or about the master, and there is nothing per
 * owner to store or provision. The info is a fixed prefix followed by the owner alone, so two
 * different owners never give the same input. `*` (a token's "any owner") names no owner.
 */
export function ownerWebhookSecret(master: string, owner: string): string {
  if (owner === '' || owner === '*') throw new Error(`no webhook secret for owner "${owner}": name one owner`);
  const key = hkdfSync('sha256', secretKey(master), OWNER_KEY_SALT, OWNER_KEY_INFO + owner, 32);
  return PREFIX + Buffer.from(key).toString('base64');
}

/** `v1,<base64>` for one message. */
export function sign(secret: string, id: string, timestampSeconds: number, body: string): string {
  return `v1,${hmac(secret, id, timestampSeconds, body).toString('base64')}`;
}

// A type alias (not an interface) so it passes where a plain header record is expected.
export type WebhookHeaders = {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
  'content-type': string;
};

/** Headers of one delivery attempt: a fresh timestamp, the id of the event (same on retries). */
export function webhookHeaders(secret: string, id: string, body: string, now: Date = new Date()): WebhookHeaders {
  const timestamp = Math.floor(now.getTime() / 1000);
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': sign(secret, id, timestamp, body),
    'content-type': 'application/json',
  };
}

/** Lowercase RFC 4648 base32 without padding. */
function base32(bytes: Buffer): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** Deterministic per (training, event), so every retry of one event carries the same id and receivers can dedupe. */
export function newWebhookId(trainingId: string, event: string): string {
  return `msg_${base32(createHash('sha256').update(`${trainingId}:${event}`).digest()).slice(0, 32)}`;
}

type HeaderBag = Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === name) return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

/**
 * True when one of the space-separated `v1,` signatures matches and the timestamp is within
 * `toleranceSeconds` of `now` (both ways: a stale or a future timestamp is a replay risk).
 */
export function verify(
  secret: string,
  headers: HeaderBag,
  body: string,
  opts: { toleranceSeconds?: number; now?: Date } = {},
): boolean {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !timestamp || !signatures || !/^\d{1,12}$/.test(timestamp)) return false;
  const nowSeconds = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  if (Math.abs(nowSeconds - Number(timestamp)) > (opts.toleranceSeconds ?? 300)) return false;
  const expected = hmac(secret, id, Number(timestamp), body);
  return signatures.split(' ').some((entry) => {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || !value) return false;
    const given = Buffer.from(value, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
