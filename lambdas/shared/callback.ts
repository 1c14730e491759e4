import { ENV, requireEnv } from './env.ts';
import { callbackSecret, safeEqual } from './ids.ts';
import { getSecretKey } from './secrets.ts';
import type { Deps } from './deps.ts';

async function key(d: Deps<'secrets'>): Promise<string> {
  return getSecretKey(d.secrets, requireEnv(ENV.callbackKeySecret));
}

/** The trainer's webhook URL: our callback route with the per-training secret in its query. */
export async function callbackUrl(d: Deps<'secrets'>, trainingId: string): Promise<string> {
  return `${d.publicUrl}/v1/callbacks/${trainingId}?secret=${callbackSecret(await key(d), trainingId)}`;
}

export async function verifyCallbackSecret(d: Deps<'secrets'>, trainingId: string, given: string | undefined): Promise<boolean> {
  return safeEqual(given ?? '', callbackSecret(await key(d), trainingId));
}
