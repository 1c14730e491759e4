import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
/** Replicate-style id: 26 lowercase base32 characters (130 random bits). */
export function newTrainingId(): string {
  // 256 is a multiple of 32, so `byte % 32` is uniform.
  return Array.from(randomBytes(26), (b) => ALPHABET[b % 32]).join('');
}

export const sha256Hex = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** The per-training callback secret: derived, so nothing secret is stored with the training. */
export const callbackSecret = (key: string, trainingId: string) =>
  createHmac('sha256', key).update(`callback:${trainingId}`).digest('base64url');

/** The trainer-side run id derives from the training id, so a retried start reuses it. */
export const runIdFor = (trainingId: string) => `db-${trainingId}`;

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // Compare digests so unequal lengths take the same time as equal ones.
  return timingSafeEqual(createHash('sha256').update(x).digest(), createHash('sha256').update(y).digest()) && x.length === y.length;
}
