/**
 * Prints a new API token and the entry to add to the `api-tokens` secret (only the hash is
 * stored). Usage: npm run token -- [--owners acme,other] [--name ci]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { sha256Hex } from '#shared/ids';

const { values } = parseArgs({ options: { owners: { type: 'string', default: '*' }, name: { type: 'string', default: 'token' } } });
const token = `r8_${randomBytes(20).toString('hex')}`;
const entry = { name: values.name, sha256: sha256Hex(token), owners: values.owners!.split(',').map((o) => o.trim()).filter(Boolean) };
process.stdout.write(
  [
    `token (shown once; give it to the client): ${token}`,
    `secret entry: ${JSON.stringify(entry)}`,
    'add it to the tokens list of the ApiTokensSecretArn secret, e.g.:',
    `  aws secretsmanager put-secret-value --secret-id <ApiTokensSecretArn> --secret-string '${JSON.stringify({ tokens: [entry] })}'`,
    '',
  ].join('\n'),
);
