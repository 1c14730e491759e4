/**
 * "Send the completion webhook": POST the training object, signed per Standard Webhooks, to the
 * training's webhook URL (query string kept), with the secret of the training's owner (the one
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

  const body = JSON.stringify(view(t, d.publicUrl));
  const id = newWebhookId(t.id, seq ? `${event}:${seq}` : event);
  const completed = event === 'completed';
  const attempts = (t.webhook_outcome?.attempts ?? 0) + 1;
  let status: number | null = null;
  let detail: string;
  try {
    const res = await request(t.webhook, {
      method: 'POST',
      headers: { ...webhookHeaders(ownerWebhookSecret(master, t.owner), id, body, d.now()), 'user-agent': 'dreambooth-api' },
      body,
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
  // The recorded outcome is the completion webhook's; progress events are best effort.
  if (completed) {
    await d.store.updateTraining(t.id, {
      webhook_outcome: { delivered, attempts, last_status: status, detail: gone ? 'receiver answered 410 Gone: stopped' : detail },
    });
  }
  if (delivered || gone) return { delivered, status, detail };
  throw new StepError(StepErrors.WebhookDeliveryFailed, `webhook ${redactUrl(t.webhook)} not delivered: ${detail}`);
}
