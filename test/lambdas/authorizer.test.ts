/** The authorizer: token schemes, hashed tokens, and the handler reading the real local secret. */
import type { APIGatewayTokenAuthorizerEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '#shared/ids';
import { authorize, tokenFromHeader, TokensSecret } from '#lambdas/authorizer/core';
import { handler } from '#lambdas/authorizer/handler';
import { startFixture, type Fixture } from '#test-helpers/aws-local';

const alice = 'r8_alice_0123456789abcdef';
const ops = 'r8_ops_fedcba9876543210';
const secret: TokensSecret = TokensSecret.parse({
  tokens: [
    { sha256: sha256Hex(alice), owners: ['alice'], name: 'alice laptop' },
    { sha256: sha256Hex(ops), owners: ['*'] },
  ],
});

describe('authorize', () => {
  it.each([
    ['Bearer', `Bearer ${alice}`],
    ['Token', `Token ${alice}`],
    ['lowercase bearer', `bearer ${alice}`],
  ])('accepts the %s scheme', (_scheme, header) => {
    expect(authorize(secret, header)).toEqual(['alice']);
  });

  it('answers the owners of the entry the token hashes to', () => {
    expect(authorize(secret, `Bearer ${ops}`)).toEqual(['*']);
  });

  it.each([
    ['an unknown token', 'Bearer r8_nobody'],
    ['a missing header', undefined],
    ['an empty header', ''],
    ['another scheme', `Basic ${alice}`],
    ['no scheme', alice],
    ['two tokens', `Bearer ${alice} ${alice}`],
    ['the stored hash given as the token', `Bearer ${sha256Hex(alice)}`],
    ['a prefix of a token', `Bearer ${alice.slice(0, -1)}`],
  ])('refuses %s', (_what, header) => {
    expect(authorize(secret, header)).toBeNull();
  });

  it('reads the token after the scheme', () => {
    expect(tokenFromHeader(`Token   ${alice}  `)).toBe(alice);
  });

  it('only stores hashes: a raw token is not a valid entry', () => {
    expect(TokensSecret.safeParse({ tokens: [{ sha256: alice, owners: ['alice'] }] }).success).toBe(false);
  });
});

describe('handler', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await startFixture({ as: 'authorizer' });
  });
  afterAll(() => fx?.stop());

  const event = (authorizationToken: string): APIGatewayTokenAuthorizerEvent => ({
    type: 'TOKEN',
    authorizationToken,
    methodArn: 'arn:aws:execute-api:us-east-1:000000000000:abc123/prod/POST/v1/trainings',
  });

  it('allows the whole API for a known token and passes its owners on', async () => {
    const out = await handler(event(`Bearer ${fx.apiToken}`));
    expect(out.policyDocument.Statement).toEqual([
      { Action: 'execute-api:Invoke', Effect: 'Allow', Resource: 'arn:aws:execute-api:us-east-1:000000000000:abc123/*/*' },
    ]);
    expect(JSON.parse(String(out.context!.owners))).toEqual(['*']);
  });

  it('answers Unauthorized (API Gateway 401) for an unknown token', async () => {
    await expect(handler(event('Bearer r8_wrong'))).rejects.toThrow(/^Unauthorized$/);
  });
});
