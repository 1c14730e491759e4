/**
 * "Send the completion webhook": POST the training (or prediction) object, signed per Standard
 * Webhooks, to its webhook URL (query string kept), with the secret of its owner (the one
 * `GET /v1/webhooks/default/secret` answers that owner's tokens), so no other tenant can forge
 * it. One event keeps one webhook-id across retries.
 * 2xx delivered; 410 stop; anything else throws WebhookDeliveryFailed and the state machine
 * retries on the configured schedule. Redirects are not followed (a 3xx is a failure).
 */
import type { BaseDeps } from '#shared/deps';
import { redactUrl, request } from '#shared/http';
import { StepError, StepErrors } from '#shared/steps';
import { view } from '#shared/training';
import { newWebhookId, ownerWebhookSecret, webhookHeaders } from '#shared/webhook-signing';

export interface NotifyResult {
  delivered: boolean;
  status: number | null;
  detail: string;
}

/** `master`: the master webhook signing key (see getWebhookSigningMaster). */
export async function notify(d: BaseDeps, master: string, trainingId: string, event: string, seq?: string): Promise<NotifyResult> {
  const t = await d.store.getTraining(trainingId);
  if (!t) throw new StepError(StepErrors.TrainerFailed, `training ${trainingId} does not exist`);
  if (!t.webhook) return { delivered: false, status: null, detail: 'no webhook requested' };
  const attempts = (t.webhook_outcome?.attempts ?? 0) + 1;
  const out = await deliver(d, master, { url: t.webhook, owner: t.owner, body: JSON.stringify(view(t, d.publicUrl)), id: newWebhookId(t.id, seq ? `${event}:${seq}` : event) });
  // The recorded outcome is the completion webhook's; progress events are best effort.
  if (event === 'completed') await d.store.updateTraining(t.id, { webhook_outcome: { ...out.outcome, attempts } });
  return settled(t.webhook, out);
}

export interface Delivery {
  url: string;
  owner: string;
  body: string;
  /** The webhook-id header: one per event, the same across retries. */
  id: string;
}

export interface Delivered extends NotifyResult {
  /** What the record keeps (webhook_outcome, less its attempts). */
  outcome: { delivered: boolean; last_status: number | null; detail: string };
}

/** One POST of the signed body; never throws (a network failure is a result). */
export async function deliver(d: BaseDeps, master: string, w: Delivery): Promise<Delivered> {
  let status: number | null = null;
  let detail: string;
  try {
    const res = await request(w.url, {
      method: 'POST',
      headers: { ...webhookHeaders(ownerWebhookSecret(master, w.owner), w.id, w.body, d.now()), 'user-agent': 'dreambooth-api' },
      body: w.body,
      timeoutMs: d.config.webhooks.timeout_seconds * 1000,
      allow: d.config.egress.allow,
      maxRedirects: 0,
      maxResponseBytes: 64 * 1024,
    });
    status = res.status;
    detail = `HTTP ${res.status}`;
  } catch (e) {
    detail = (e as Error).message;
  }
  const delivered = status !== null && status >= 200 && status < 300;
  const gone = status === 410;
  return { delivered, status, detail, outcome: { delivered, last_status: status, detail: gone ? 'receiver answered 410 Gone: stopped' : detail } };
}

/** Delivered or 410: done; else WebhookDeliveryFailed, which the caller's retries act on. */
export function settled(url: string, out: Delivered): NotifyResult {
  const { delivered, status, detail } = out;
  if (delivered || status === 410) return { delivered, status, detail };
  throw new StepError(StepErrors.WebhookDeliveryFailed, `webhook ${redactUrl(url)} not delivered: ${detail}`);
}
