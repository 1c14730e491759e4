/**
 * One signing secret per owner: each token reads its own owner's key from the api handler (the
 * owners its token maps to, as the authorizer hands them over), and a webhook of one owner's
 * training, received by a real HTTP receiver, verifies with that owner's key and no other —
 * by our check, by `standardwebhooks` and by the Replicate client's `validateWebhook`.
 */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { validateWebhook } from 'replicate';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getWebhookSigningMaster } from '#shared/secrets';
import { ownerWebhookSecret, verify } from '#shared/webhook-signing';
import { authorize, type TokensSecret } from '#lambdas/authorizer/core';
import { handler } from '#lambdas/api/handler';
import { notify } from '#lambdas/notify/core';
import { LOCAL_SECRET_IDS, newTraining, startFixture, startServer, type Fixture, type TestServer } from '#test-helpers/aws-local';
import { sha256Hex } from '#shared/ids';
import { MODEL_MAX } from '#lambdas/api/schemas';

const TOKENS = { alice: 'r8_alice', bob: 'r8_bob', both: 'r8_both', any: 'r8_any' } as const;
const OWNERS: Record<keyof typeof TOKENS, string[]> = { alice: ['alice'], bob: ['bob'], both: ['alice', 'bob'], any: ['*'] };
const tokens: TokensSecret = { tokens: Object.entries(TOKENS).map(([name, t]) => ({ name, sha256: sha256Hex(t), owners: OWNERS[name as keyof typeof TOKENS] })) };

let fx: Fixture;
let receiver: TestServer;

beforeAll(async () => {
  receiver = await startServer((_req, res) => res.writeHead(204).end());
  fx = await startFixture({ as: 'api', lambdas: { notify: async () => undefined } });
});
afterAll(async () => {
  await receiver?.close();
  await fx?.stop();
});

/** `GET /v1/webhooks/default/secret` through the api handler, with the owners the token maps to. */
async function keyRoute(token: string, query: Record<string, string> | null = null): Promise<{ status: number; body: { key?: string; detail?: string } }> {
  const owners = authorize(tokens, `Bearer ${token}`);
  if (!owners) throw new Error(`${token} is no known token`);
  const event = {
    httpMethod: 'GET',
    resource: '/v1/webhooks/default/secret',
    path: '/v1/webhooks/default/secret',
    pathParameters: null,
    queryStringParameters: query,
    headers: {},
    body: null,
    isBase64Encoded: false,
    requestContext: { authorizer: { owners: JSON.stringify(owners) } },
  } as unknown as APIGatewayProxyEvent;
  const res = await handler(event);
  return { status: res.statusCode, body: JSON.parse(res.body) };
}

const keyOf = async (token: string, query?: Record<string, string>) => {
  const res = await keyRoute(token, query);
  expect(res.status, res.body.detail).toBe(200);
  return res.body.key!;
};

describe('GET /v1/webhooks/default/secret', () => {
  it("answers each owner's own key, never the master", async () => {
    const alice = await keyOf(TOKENS.alice);
    const bob = await keyOf(TOKENS.bob);
    expect(alice).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(bob).toMatch(/^whsec_/);
    expect(alice).not.toBe(bob);
    expect([alice, bob]).not.toContain(fx.webhookSecret);
    // Stable: the same key on every call.
    expect(await keyOf(TOKENS.alice)).toBe(alice);
  });

  it('a token for several owners, or for any, names the owner; the key is the same one that owner gets', async () => {
    for (const token of [TOKENS.both, TOKENS.any]) {
      const unnamed = await keyRoute(token);
      expect(unnamed.status).toBe(400);
      expect(unnamed.body.detail).toMatch(/name the one whose webhooks you verify: GET \/v1\/webhooks\/default\/secret\?owner=<owner>/);
      expect(await keyOf(token, { owner: 'bob' })).toBe(await keyOf(TOKENS.bob));
    }
    expect(await keyOf(TOKENS.alice, { owner: 'alice' })).toBe(await keyOf(TOKENS.alice));
  });

  it("refuses another owner's key and names that are no owner", async () => {
    const other = await keyRoute(TOKENS.alice, { owner: 'bob' });
    expect(other).toMatchObject({ status: 404, body: { detail: 'owner: no owner bob for this token' } });
    expect(other.body).not.toHaveProperty('key');
    for (const bad of ['*', '', 'Bob', 'a/b', 'x'.repeat(MODEL_MAX)]) {
      const res = await keyRoute(TOKENS.any, { owner: bad });
      expect(res.status, `${bad}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.detail, bad).toMatch(/^owner: /);
    }
  });
});

describe("an owner's webhooks", () => {
  it("verify with that owner's key only", async () => {
    // The key as notify's own role reads it.
    const master = await getWebhookSigningMaster(fx.clientsOf('notify').secrets, LOCAL_SECRET_IDS.webhookSigning);
    const keys = { alice: await keyOf(TOKENS.alice), bob: await keyOf(TOKENS.bob) };
    for (const [owner, other] of [['alice', 'bob'], ['bob', 'alice']] as const) {
      const t = await newTraining(fx.operator, { model: `${owner}/portrait`, owner, status: 'succeeded', completed_at: new Date().toISOString(), webhook: `${receiver.url}/hook/${owner}` });
      expect(await notify(fx.clientsOf('notify'), master, t.id, 'completed')).toMatchObject({ delivered: true });
      const req = receiver.requests.find((r) => r.url === `/hook/${owner}` && JSON.parse(r.body).id === t.id)!;
      const headers = req.headers as Record<string, string>;
      const asRequest = () => new Request(`${receiver.url}${req.url}`, { method: 'POST', headers, body: req.body });

      expect(verify(keys[owner], headers, req.body), owner).toBe(true);
      expect(() => new Webhook(keys[owner]).verify(req.body, headers)).not.toThrow();
      expect(await validateWebhook(asRequest(), keys[owner])).toBe(true);

      // The other tenant's key — and the master — forge nothing.
      expect(verify(keys[other], headers, req.body), `${owner} with ${other}'s key`).toBe(false);
      expect(() => new Webhook(keys[other]).verify(req.body, headers)).toThrow();
      expect(await validateWebhook(asRequest(), keys[other])).toBe(false);
      expect(verify(fx.webhookSecret, headers, req.body)).toBe(false);
    }
  });

  it('derive from the master key: the same owner and master give the same key, another master another', () => {
    const master = `whsec_${Buffer.from('m'.repeat(32)).toString('base64')}`;
    expect(ownerWebhookSecret(master, 'alice')).toBe(ownerWebhookSecret(master, 'alice'));
    expect(ownerWebhookSecret(master, 'alice')).not.toBe(ownerWebhookSecret(`whsec_${Buffer.from('n'.repeat(32)).toString('base64')}`, 'alice'));
    expect(() => ownerWebhookSecret(master, '*')).toThrow(/name one owner/);
  });
});
