/** What every operation checks of a request: its JSON body, the token's owners, URLs against the egress guard. */
import type { BaseDeps } from '#shared/deps';
import { ApiError, badRequest } from '#shared/errors';
import { checkUrlSyntax, EgressError } from '#shared/egress';

export function parseJson(d: BaseDeps, body: string | null): unknown {
  if (body === null || body.trim() === '') throw badRequest('the request body is empty: send a JSON object');
  if (Buffer.byteLength(body) > d.config.limits.body_max_bytes) {
    throw new ApiError(413, `the request body exceeds ${d.config.limits.body_max_bytes} bytes`);
  }
  try {
    return JSON.parse(body);
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
}

export { canUse } from '#shared/owners';

export function checkEgress(d: BaseDeps, field: string, url: unknown): void {
  if (typeof url !== 'string') return;
  try {
    checkUrlSyntax(url, { allow: d.config.egress.allow });
  } catch (e) {
    if (e instanceof EgressError) throw badRequest(`${field}: ${e.detail}`);
    throw e;
  }
}

export function parseObject(d: BaseDeps, body: string | null): Record<string, unknown> {
  const raw = parseJson(d, body);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw badRequest('the request body must be a JSON object');
  return raw as Record<string, unknown>;
}
