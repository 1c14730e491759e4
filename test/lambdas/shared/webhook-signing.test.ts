import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { newWebhookId, sign, verify, webhookHeaders } from '#shared/webhook-signing';

const secret = `whsec_${randomBytes(24).toString('base64')}`;
const otherSecret = `whsec_${randomBytes(24).toString('base64')}`;
const body = JSON.stringify({ id: 'abc123', status: 'succeeded', version: 'f'.repeat(64) });
const now = new Date('2026-01-02T03:04:05Z');

describe('webhook signing', () => {
  it('produces what the standardwebhooks package verifies', () => {
    const headers = webhookHeaders(secret, 'msg_1', body, new Date());
    expect(new Webhook(secret).verify(body, { ...headers })).toEqual(JSON.parse(body));
  });

  it('signs exactly as the standardwebhooks package does', () => {
    const ts = Math.floor(now.getTime() / 1000);
    expect(sign(secret, 'msg_1', ts, body)).toBe(new Webhook(secret).sign('msg_1', now, body));
  });

  it('verifies what the standardwebhooks package signs', () => {
    const ts = Math.floor(now.getTime() / 1000);
    const headers = {
      'webhook-id': 'msg_2',
      'webhook-timestamp': String(ts),
      'webhook-signature': new Webhook(secret).sign('msg_2', now, body),
    };
    expect(verify(secret, headers, body, { now })).toBe(true);
  });

  it('sets the headers of one delivery', () => {
    const headers = webhookHeaders(secret, 'msg_3', body, now);
    expect(headers).toEqual({
      'webhook-id': 'msg_3',
      'webhook-timestamp': String(now.getTime() / 1000),
      'webhook-signature': expect.stringMatching(/^v1,[A-Za-z0-9+/]{43}=$/),
      'content-type': 'application/json',
    });
  });

  it('accepts any of several signatures (key rotation) and any header case', () => {
    const signed = webhookHeaders(secret, 'msg_4', body, now);
    const old = webhookHeaders(otherSecret, 'msg_4', body, now)['webhook-signature'];
    const headers = {
      'Webhook-Id': signed['webhook-id'],
      'Webhook-Timestamp': signed['webhook-timestamp'],
      'Webhook-Signature': `v2,ignored ${old} ${signed['webhook-signature']}`,
    };
    expect(verify(secret, headers, body, { now })).toBe(true);
    expect(verify(otherSecret, headers, body, { now })).toBe(true);
  });

  it.each([
    ['a tampered body', (h: Record<string, string>) => [h, body.replace('succeeded', 'failed')] as const],
    ['a tampered id', (h: Record<string, string>) => [{ ...h, 'webhook-id': 'msg_other' }, body] as const],
    ['a tampered timestamp', (h: Record<string, string>) => [{ ...h, 'webhook-timestamp': String(Number(h['webhook-timestamp']) + 1) }, body] as const],
    ['a missing signature', (h: Record<string, string>) => [{ ...h, 'webhook-signature': '' }, body] as const],
    ['a truncated signature', (h: Record<string, string>) => [{ ...h, 'webhook-signature': h['webhook-signature'].slice(0, 20) }, body] as const],
    ['an unknown version', (h: Record<string, string>) => [{ ...h, 'webhook-signature': h['webhook-signature'].replace('v1,', 'v9,') }, body] as const],
  ])('rejects %s', (_, tamper) => {
    const [headers, payload] = tamper({ ...webhookHeaders(secret, 'msg_5', body, now) });
    expect(verify(secret, headers, payload, { now })).toBe(false);
  });

  it('rejects the wrong secret, in both directions of interop', () => {
    const headers = webhookHeaders(secret, 'msg_6', body, now);
    expect(verify(otherSecret, headers, body, { now })).toBe(false);
    const fresh = webhookHeaders(secret, 'msg_6', body, new Date());
    expect(() => new Webhook(otherSecret).verify(body, { ...fresh })).toThrow();
  });

  it('rejects stale and future timestamps beyond the tolerance', () => {
    const headers = webhookHeaders(secret, 'msg_7', body, now);
    const at = (seconds: number) => new Date(now.getTime() + seconds * 1000);
    expect(verify(secret, headers, body, { now: at(300) })).toBe(true);
    expect(verify(secret, headers, body, { now: at(301) })).toBe(false);
    expect(verify(secret, headers, body, { now: at(-301) })).toBe(false);
    expect(verify(secret, headers, body, { now: at(3600), toleranceSeconds: 3600 })).toBe(true);
  });

  it('derives one id per training and event, stable across retries', () => {
    const id = newWebhookId('abc123def456ghi789jk', 'completed');
    expect(id).toMatch(/^msg_[a-z2-7]{32}$/);
    expect(newWebhookId('abc123def456ghi789jk', 'completed')).toBe(id);
    expect(newWebhookId('abc123def456ghi789jk', 'start')).not.toBe(id);
    expect(newWebhookId('abc123def456ghi789jx', 'completed')).not.toBe(id);
  });
});
