import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
/** Replicate-style id: 26 lowercase base32 characters (130 random bits). */
export function newTrainingId(): string {
  // 256 is a multiple of 32, so `byte % 32` is uniform.
  return Array.from(randomBytes(26), (b) => ALPHABET[b % 32]).join('');
}
/** What the steps and the build accept as a training id (newTrainingId makes 26 characters). */
export const TRAINING_ID = /^[a-z0-9]{20,40}$/;

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

/**
 * ECR's repository-name pattern and length (CreateRepository, `repositoryName`): `/`-separated
 * components of lowercase letters and digits, within a component single `.`, `_` or `-`
 * between them (`a--b`, `a__b`, `a..b` and a trailing `-` are refused), 2 to 256 characters.
 */
export const ECR_REPOSITORY_NAME = /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*\/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
/** One `/`-free component of an ECR repository name (a model's owner or name, a trainer's name). */
export const ECR_NAME_COMPONENT = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
export const ECR_REPOSITORY_NAME_MAX = 256;
export const ECR_NAME_RULE = 'lowercase letters and digits, with single ".", "_" or "-" only between them (ECR repository names)';

/** Why ECR would refuse `name` as a repository name, or null when it accepts it. */
export function ecrRepositoryNameProblem(name: string): string | null {
  if (name.length < 2 || name.length > ECR_REPOSITORY_NAME_MAX) return `must be 2 to ${ECR_REPOSITORY_NAME_MAX} characters long (ECR repository names)`;
  if (!ECR_REPOSITORY_NAME.test(name)) return `must be "/"-separated parts of ${ECR_NAME_RULE}`;
  return null;
}
