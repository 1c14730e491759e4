/**
 * `GET /v1/webhooks/default/secret`: the signing secret of the caller's owner, in Replicate's
 * shape `{"key": "whsec_…"}`. Each owner has its own (derived from the master key, which no
 * route answers), so one tenant's token never reads the key that signs another's webhooks.
 */
import { badRequest, notFound } from '#shared/errors';
import { ownerWebhookSecret } from '#shared/webhook-signing';
import { canUse } from './requests.ts';
import { MODEL_MAX, MODEL_RE, MODEL_RULE } from './schemas.ts';
import type { ApiDeps, ApiRequest, ApiResponse } from './types.ts';

export async function getWebhookSecret(d: ApiDeps, req: ApiRequest): Promise<ApiResponse> {
  const owner = signingOwner(req);
  return { status: 200, body: { key: ownerWebhookSecret(await d.webhookSigningMaster(), owner) } };
}

/**
 * A token for one owner gets that owner's key, as a Replicate account gets its own (so the
 * Replicate client's `webhooks.default.secret.get()` works unchanged). A token for several
 * owners, or for any (`*`), names one with `?owner=`: a key it did not ask for would verify none
 * of the other owners' webhooks.
 */
function signingOwner(req: ApiRequest): string {
  const asked = req.query.owner;
  const mine = [...new Set(req.owners)];
  const owner = asked ?? (mine.length === 1 && mine[0] !== '*' ? mine[0] : undefined);
  if (owner === undefined) {
    const which = mine.includes('*') ? 'any owner' : `the owners ${mine.join(', ')}`;
    throw badRequest(`owner: this token acts for ${which}; name the one whose webhooks you verify: GET /v1/webhooks/default/secret?owner=<owner>`);
  }
  // An owner is what may stand before the "/" of a model name.
  if (!MODEL_RE.test(`${owner}/x`) || owner.length >= MODEL_MAX) throw badRequest(`owner: "${owner}" is not the owner part of a model name (${MODEL_RULE})`);
  // 404 as for reads: whether an owner exists is not for other tokens to learn.
  if (!canUse(req.owners, owner)) throw notFound(`owner: no owner ${owner} for this token`);
  return owner;
}
