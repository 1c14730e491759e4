/**
 * Adds an API token to the api-tokens secret (only its hash is stored) or revokes one, keeping
 * every other entry; safe against a concurrent change of the secret (see token-list.ts).
 *   npm run token -- [--name ci] [--owners acme,other]         add; prints the token once
 *   npm run token -- --revoke ci                                 remove the entry named ci
 * Target: `--secret-id <ApiTokensSecretArn>` (AWS, default credentials and region), else local
 * mode's data directory (`--data-dir`, default DREAMBOOTH_DATA_DIR or .dreambooth/). A running
 * local mode sees the change once its five-minute secret cache expires, as on AWS.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { sha256Hex } from '#shared/ids';
import { addToken, editTokens, revokeToken, TokenListError } from '../lambdas/authorizer/token-list.ts';
import { startEndpoint } from '../infra/local/endpoint.ts';
import { LOCAL_REGION, LOCAL_SECRET_IDS } from '../infra/local/names.ts';
import { secretsManagerApi } from '../infra/local/secretsmanager/api.ts';
import { loadLocalSecrets, SECRETS_FILE } from '../infra/local/secretsmanager/local-secrets.ts';
import { SecretStore } from '../infra/local/secretsmanager/store.ts';

const { values } = parseArgs({
  options: {
    owners: { type: 'string', default: '*' },
    name: { type: 'string', default: 'token' },
    revoke: { type: 'string' },
    'secret-id': { type: 'string' },
    'data-dir': { type: 'string' },
  },
});

async function main(): Promise<void> {
  const target = values['secret-id'] ? aws(values['secret-id']) : await local(resolve(values['data-dir'] || process.env.DREAMBOOTH_DATA_DIR || '.dreambooth'));
  try {
    if (values.revoke) {
      await editTokens(target.client, target.secretId, revokeToken(values.revoke));
      say(`revoked the token named "${values.revoke}" (${target.where})`);
      return;
    }
    const token = `r8_${randomBytes(20).toString('hex')}`;
    const owners = values.owners!.split(',').map((o) => o.trim()).filter(Boolean);
    await editTokens(target.client, target.secretId, addToken({ name: values.name, sha256: sha256Hex(token), owners }));
    say(`added the token named "${values.name}" for owners ${owners.join(', ')} (${target.where})`);
    say(`token (shown once; give it to the client): ${token}`);
  } finally {
    target.client.destroy();
    await target.close();
  }
}

function aws(secretId: string) {
  return { client: new SecretsManagerClient({}), secretId, where: `secret ${secretId}`, close: async () => undefined };
}

/** Local mode's Secrets Manager over the data directory, served for this one command. */
async function local(dataDir: string) {
  mkdirSync(dataDir, { recursive: true });
  const seeds = loadLocalSecrets(dataDir, process.env.DREAMBOOTH_API_TOKEN).secrets;
  const store = new SecretStore(seeds, join(dataDir, SECRETS_FILE));
  const endpoint = await startEndpoint({ stepFunctions: {}, secretsManager: secretsManagerApi(store, LOCAL_REGION), lambdas: {}, log: () => undefined });
  const client = new SecretsManagerClient({ endpoint: endpoint.url, region: LOCAL_REGION, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  return { client, secretId: LOCAL_SECRET_IDS.apiTokens, where: `local mode, ${dataDir}`, close: endpoint.close };
}

const say = (line: string) => process.stdout.write(`${line}\n`);

main().catch((err) => {
  process.stderr.write(`${err instanceof TokenListError ? err.message : (err as Error).stack}\n`);
  process.exit(1);
});
