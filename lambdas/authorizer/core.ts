/**
 * API tokens: `Authorization: Bearer <t>` (Replicate's clients) or `Token <t>` (the seed's).
 * Tokens are stored as SHA-256 hashes with the owners they may use; comparison is constant time.
 */
import * as z from '#shared/zod';
import { safeEqual, sha256Hex } from '#shared/ids';

export const TokensSecret = z.object({
  tokens: z.array(
    z.object({
      sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/)),
      owners: z.array(z.string()).check(z.minLength(1)),
      name: z.optional(z.string()),
    }),
  ),
});
export type TokensSecret = z.infer<typeof TokensSecret>;

export function tokenFromHeader(header: string | undefined): string | null {
  const m = (header ?? '').match(/^(?:Bearer|Token)\s+(\S+)\s*$/i);
  return m ? m[1]! : null;
}

/** The owners the token may use, or null when it is not a known token. */
export function authorize(secret: TokensSecret, header: string | undefined): string[] | null {
  const token = tokenFromHeader(header);
  if (!token) return null;
  const hash = sha256Hex(token);
  let found: string[] | null = null;
  // Check every entry so timing does not reveal which one matched.
  for (const entry of secret.tokens) if (safeEqual(hash, entry.sha256) && !found) found = entry.owners;
  return found;
}
