/** Secrets Manager reads, cached per container for five minutes (rotation-friendly). */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

const TTL_MS = 5 * 60_000;
const cache = new Map<string, { value: string; at: number }>();

export async function getSecretString(client: SecretsManagerClient, id: string): Promise<string> {
  const hit = cache.get(id);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.value;
  const out = await client.send(new GetSecretValueCommand({ SecretId: id }));
  if (!out.SecretString) throw new Error(`secret ${id} has no string value`);
  cache.set(id, { value: out.SecretString, at: Date.now() });
  return out.SecretString;
}

/** Generated secrets are JSON `{"key": "…"}` (see infra secrets construct). */
export async function getSecretKey(client: SecretsManagerClient, id: string): Promise<string> {
  const raw = await getSecretString(client, id);
  try {
    const parsed = JSON.parse(raw) as { key?: unknown };
    if (typeof parsed.key === 'string' && parsed.key.length > 0) return parsed.key;
  } catch {
    /* a plain string secret is accepted as the key itself */
  }
  return raw;
}

/**
 * The master webhook signing key, `whsec_<base64>`: each owner's secret derives from it
 * (ownerWebhookSecret in webhook-signing.ts); no route answers the master itself.
 */
export async function getWebhookSigningMaster(client: SecretsManagerClient, id: string): Promise<string> {
  const key = await getSecretKey(client, id);
  return key.startsWith('whsec_') ? key : `whsec_${Buffer.from(key).toString('base64')}`;
}

export function clearSecretCache(): void {
  cache.clear();
}
