/** Local mode's secrets: generated once into the data directory (mode 0600), like the stack's. */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '#shared/ids';

export const SECRET_IDS = {
  apiTokens: 'local/api-tokens',
  webhook: 'local/webhook-signing',
  callbackKey: 'local/callback-key',
} as const;
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
      [SECRET_IDS.apiTokens]: JSON.stringify({ tokens: [{ sha256: sha256Hex(token), owners: ['*'], name: 'local' }] }),
      [SECRET_IDS.webhook]: JSON.stringify({ key: stored.webhook_secret }),
      [SECRET_IDS.callbackKey]: JSON.stringify({ key: stored.callback_key }),
    },
  };
}
