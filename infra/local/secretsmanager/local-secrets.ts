/**
 * Local mode's secrets: generated once into the data directory (mode 0600), like the stack's,
 * and the API tokens list, kept in the local Secrets Manager's file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { sha256Hex } from '#shared/ids';
import { editTokens, parseTokens, upsertTokens } from '../../../lambdas/authorizer/token-list.ts';
import { LOCAL_SECRET_IDS } from '../names.ts';
import { isPersisted } from './store.ts';

/** Written secret versions (e.g. `npm run token`), beside the generated ones. */
export const SECRETS_FILE = 'secrets-manager.json';

interface Stored {
  api_token: string;
  webhook_secret: string;
  callback_key: string;
}

export function loadLocalSecrets(dataDir: string, envToken: string | undefined) {
  const path = join(dataDir, 'secrets.json');
  let stored: Stored;
  if (existsSync(path)) stored = JSON.parse(readFileSync(path, 'utf8')) as Stored;
  else {
    stored = {
      api_token: `r8_${randomBytes(20).toString('hex')}`,
      webhook_secret: `whsec_${randomBytes(32).toString('base64')}`,
      callback_key: randomBytes(32).toString('base64url'),
    };
    writeFileSync(path, JSON.stringify(stored, null, 2), { mode: 0o600 });
  }
  const token = envToken || stored.api_token;
  return {
    token,
    generated: !envToken,
    secrets: {
      [LOCAL_SECRET_IDS.apiTokens]: JSON.stringify({ tokens: [{ sha256: sha256Hex(token), owners: ['*'], name: 'local' }] }),
      [LOCAL_SECRET_IDS.webhookSigning]: JSON.stringify({ key: stored.webhook_secret }),
      [LOCAL_SECRET_IDS.callbackKey]: JSON.stringify({ key: stored.callback_key }),
    },
  };
}

export type LocalSecrets = ReturnType<typeof loadLocalSecrets>;

/** The secrets the local Secrets Manager holds: local mode's own, the registry's, and --secrets. */
export function localSecretValues(secrets: LocalSecrets, extra: Record<string, string> | undefined): Record<string, string> {
  return {
    'local/registry': JSON.stringify({ username: '', password: '' }),
    ...extra,
    // The tokens that come with --secrets join the local one through ensureTokens.
    ...secrets.secrets,
  };
}

/**
 * The tokens list is kept in the data directory; the local token and those given with
 * --secrets are put into it, beside the others, at every start. It is written even when
 * nothing changes, so that `npm run token` (run without this process's environment) edits
 * the list this process serves, not one it derives anew.
 */
export async function ensureTokens(
  client: SecretsManagerClient,
  dataDir: string,
  secrets: LocalSecrets,
  extra: Record<string, string> | undefined,
): Promise<void> {
  const id = LOCAL_SECRET_IDS.apiTokens;
  const given = extra?.[id];
  const entries = [...parseTokens(secrets.secrets[id]!), ...(given ? parseTokens(given) : [])];
  const kept = isPersisted(join(dataDir, SECRETS_FILE), id);
  await editTokens(client, id, (tokens) => upsertTokens(entries)(tokens) ?? (kept ? null : tokens));
}
