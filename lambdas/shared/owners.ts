/** Which owners a token may act for, as the authorizer hands them to the token routes. */

/** `*` means any owner. */
export const canUse = (owners: string[], owner: string): boolean => owners.includes('*') || owners.includes(owner);

/** The authorizer's `owners` context value (a JSON array as a string); anything else is none. */
export function parseOwners(raw: unknown): string[] {
  if (typeof raw !== 'string') return [];
  try {
    const v = JSON.parse(raw);
    return Array.isArray(v) ? v.map(String) : [];
  } catch {
    return [];
  }
}
