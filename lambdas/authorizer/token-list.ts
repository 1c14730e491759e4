/**
 * Edits of the api-tokens secret (`{"tokens": [...]}`) that keep every other entry and are
 * safe against a concurrent writer. Secrets Manager has no compare-and-swap on a value, but
 * its staging labels give one: the new value is written as a version that is not yet
 * current, then AWSCURRENT is moved to it with RemoveFromVersionId = the version that was
 * read. If another writer moved AWSCURRENT meanwhile, the move fails and the edit is
 * re-applied to the newer value.
 */
import { randomUUID } from 'node:crypto';
import {
  GetSecretValueCommand,
  PutSecretValueCommand,
  UpdateSecretVersionStageCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { TokensSecret } from './core.ts';

export type TokenEntry = TokensSecret['tokens'][number];

/** A custom label, not AWSPENDING, so that a rotation function never mistakes our version for its own. */
const PENDING = 'DREAMBOOTH_PENDING';
const ATTEMPTS = 5;

export class TokenListError extends Error {}

/**
 * Applies `edit` to the current list and makes the result current; `edit` returns null when
 * nothing changes. Returns the new version id, or null when nothing was written.
 */
export async function editTokens(client: SecretsManagerClient, secretId: string, edit: (tokens: TokenEntry[]) => TokenEntry[] | null): Promise<string | null> {
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const current = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
    const next = edit(parseTokens(current.SecretString ?? ''));
    if (next === null) return null;
    const versionId = randomUUID();
    const value = JSON.stringify({ tokens: next } satisfies TokensSecret);
    await client.send(new PutSecretValueCommand({ SecretId: secretId, SecretString: value, ClientRequestToken: versionId, VersionStages: [PENDING] }));
    try {
      await client.send(
        new UpdateSecretVersionStageCommand({ SecretId: secretId, VersionStage: 'AWSCURRENT', MoveToVersionId: versionId, RemoveFromVersionId: current.VersionId }),
      );
      return versionId;
    } catch (err) {
      // The error alone does not say whether the move happened (e.g. a lost response): ask.
      const now = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
      if (now.VersionId === versionId) return versionId;
      if (now.VersionId === current.VersionId) throw err;
      // Another writer made a newer version current: apply the edit again, to it.
    }
  }
  throw new TokenListError(`the secret ${secretId} kept changing during ${ATTEMPTS} attempts; run the command again`);
}

export function parseTokens(raw: string): TokenEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new TokenListError('the api-tokens secret is not JSON; expected {"tokens": [...]}');
  }
  const parsed = TokensSecret.safeParse(json);
  if (!parsed.success) throw new TokenListError('the api-tokens secret does not hold {"tokens": [{"sha256", "owners", "name"}]}');
  return parsed.data.tokens;
}

export const addToken = (entry: TokenEntry) => (tokens: TokenEntry[]) => {
  if (tokens.some((t) => t.name === entry.name)) throw new TokenListError(`a token named "${entry.name}" exists; choose another --name or revoke it first`);
  return [...tokens, entry];
};

export const revokeToken = (name: string) => (tokens: TokenEntry[]) => {
  const kept = tokens.filter((t) => t.name !== name);
  if (kept.length === tokens.length) {
    throw new TokenListError(`no token named "${name}"; names: ${tokens.map((t) => t.name ?? '(unnamed)').join(', ') || '(none)'}`);
  }
  return kept;
};

/** Adds or replaces entries by name (by hash when unnamed); null when every entry is already there. */
export const upsertTokens = (entries: TokenEntry[]) => (tokens: TokenEntry[]) => {
  const key = (t: TokenEntry) => t.name ?? t.sha256;
  const missing = entries.filter((e) => !tokens.some((t) => key(t) === key(e) && t.sha256 === e.sha256 && t.owners.join() === e.owners.join()));
  if (missing.length === 0) return null;
  return [...tokens.filter((t) => !missing.some((e) => key(e) === key(t))), ...missing];
};
