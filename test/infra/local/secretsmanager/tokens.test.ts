/**
 * `npm run token`: adds and revokes entries of the api-tokens secret without losing others,
 * also when another writer changes the secret in between. Runs against local mode's Secrets
 * Manager (versions and staging labels, as on AWS) through the real SDK client.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { sha256Hex } from '#shared/ids';
import { addToken, editTokens, revokeToken, type TokenEntry } from '#lambdas/authorizer/token-list';
import { authorize } from '#lambdas/authorizer/core';
import { startEndpoint } from '#infra/local/endpoint';
import { SecretStore } from '#infra/local/secretsmanager/store';
import { secretsManagerApi } from '#infra/local/secretsmanager/api';

const ID = 'local/api-tokens';
const seed = JSON.stringify({ tokens: [{ name: 'local', sha256: sha256Hex('r8_local'), owners: ['*'] }] });
const entry = (name: string): TokenEntry => ({ name, sha256: sha256Hex(`r8_${name}`), owners: [name] });

let dir: string;
let endpoint: Awaited<ReturnType<typeof startEndpoint>>;
let client: SecretsManagerClient;
const newClient = () => new SecretsManagerClient({ endpoint: endpoint.url, region: 'us-east-1', credentials: { accessKeyId: 'l', secretAccessKey: 'l' } });
const current = async () => JSON.parse((await client.send(new GetSecretValueCommand({ SecretId: ID }))).SecretString!) as { tokens: TokenEntry[] };
const names = async () => (await current()).tokens.map((t) => t.name);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tokens-'));
  const store = new SecretStore({ [ID]: seed }, join(dir, 'secrets-manager.json'));
  endpoint = await startEndpoint({ stepFunctions: {}, secretsManager: secretsManagerApi(store, 'us-east-1'), lambdas: {}, log: () => undefined });
  client = newClient();
});

afterAll(async () => {
  client?.destroy();
  await endpoint?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the local Secrets Manager keeps versions as AWS does', () => {
  it('refuses to move AWSCURRENT from a version that no longer holds it', async () => {
    const before = await client.send(new GetSecretValueCommand({ SecretId: ID }));
    const put = await client.send(new PutSecretValueCommand({ SecretId: ID, SecretString: seed, VersionStages: ['X'] }));
    // Someone else makes a new version current first.
    const other = await client.send(new PutSecretValueCommand({ SecretId: ID, SecretString: seed }));
    const move = new UpdateSecretVersionStageCommand({ SecretId: ID, VersionStage: 'AWSCURRENT', MoveToVersionId: put.VersionId, RemoveFromVersionId: before.VersionId });
    await expect(client.send(move)).rejects.toMatchObject({ name: 'InvalidParameterException' });
    const now = await client.send(new GetSecretValueCommand({ SecretId: ID }));
    expect(now.VersionId).toBe(other.VersionId);
    const previous = await client.send(new GetSecretValueCommand({ SecretId: ID, VersionStage: 'AWSPREVIOUS' }));
    expect(previous.VersionId).toBe(before.VersionId);
  });
});

describe('editTokens', () => {
  it('adds an entry beside the others and revokes one by name', async () => {
    await editTokens(client, ID, addToken(entry('ci')));
    await editTokens(client, ID, addToken(entry('alice')));
    expect(await names()).toEqual(['local', 'ci', 'alice']);
    await editTokens(client, ID, revokeToken('ci'));
    expect(await names()).toEqual(['local', 'alice']);
    expect(authorize(await current(), 'Bearer r8_alice')).toEqual(['alice']);
    expect(authorize(await current(), 'Bearer r8_ci')).toBeNull();
    await expect(editTokens(client, ID, revokeToken('ci'))).rejects.toThrow(/no token named "ci"/);
    await expect(editTokens(client, ID, addToken(entry('alice')))).rejects.toThrow(/exists/);
  });

  it('keeps a change another writer made between its read and its write', async () => {
    const racer = newClient();
    let raced = false;
    // Just before this writer's first PutSecretValue, another writer completes its own edit.
    racer.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'PutSecretValueCommand' && !raced) {
          raced = true;
          await editTokens(client, ID, addToken(entry('bob')));
        }
        return next(args);
      },
      { step: 'initialize' },
    );
    await editTokens(racer, ID, addToken(entry('carol')));
    racer.destroy();
    expect(raced).toBe(true);
    expect(await names()).toEqual(['local', 'alice', 'bob', 'carol']);
  });

  it('keeps a plain put-secret-value made between its read and its write', async () => {
    const racer = newClient();
    let raced = false;
    racer.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'PutSecretValueCommand' && !raced) {
          raced = true;
          const value = await current();
          await client.send(new PutSecretValueCommand({ SecretId: ID, SecretString: JSON.stringify({ tokens: [...value.tokens, entry('dave')] }) }));
        }
        return next(args);
      },
      { step: 'initialize' },
    );
    await editTokens(racer, ID, revokeToken('alice'));
    racer.destroy();
    expect(await names()).toEqual(['local', 'bob', 'carol', 'dave']);
  });
});

describe('npm run token against a local data directory', () => {
  const run = (...args: string[]) =>
    promisify(execFile)('npx', ['tsx', 'bin/new-token.ts', '--data-dir', join(dir, 'data'), ...args], { env: { ...process.env, DREAMBOOTH_API_TOKEN: 'r8_local' } });

  it('adds two tokens, keeps the local one, and revokes one', async () => {
    const ci = await run('--name', 'ci', '--owners', 'acme');
    const token = /token \(shown once[^:]*\): (r8_[0-9a-f]{40})/.exec(ci.stdout)?.[1];
    expect(token).toBeDefined();
    await run('--name', 'other');
    const store = new SecretStore({}, join(dir, 'data', 'secrets-manager.json'));
    const value = () => JSON.parse(Object.values(store.read(ID)!).find((v) => v.stages.includes('AWSCURRENT'))!.value) as { tokens: TokenEntry[] };
    expect(value().tokens.map((t) => t.name)).toEqual(['local', 'ci', 'other']);
    expect(authorize(value(), `Token ${token}`)).toEqual(['acme']);
    expect(authorize(value(), 'Bearer r8_local')).toEqual(['*']);
    await run('--revoke', 'ci');
    expect(value().tokens.map((t) => t.name)).toEqual(['local', 'other']);
    await expect(run('--revoke', 'ci')).rejects.toMatchObject({ stderr: expect.stringContaining('no token named "ci"') });
  }, 60_000);
});
