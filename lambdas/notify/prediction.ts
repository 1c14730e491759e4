/**
 * A prediction's webhook: the prediction object as `GET /v1/predictions/{id}` answers it (file
 * outputs as presigned URLs, signed with this function's role), to the prediction's webhook, for
 * the events its `webhook_events_filter` names; signed as a training's webhook is (./core.ts).
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { BaseDeps } from '#shared/deps';
import { StepError, StepErrors } from '#shared/steps';
import { PredictionStore } from '#shared/predictions/store';
import { signedPredictionView } from '#shared/predictions/urls';
import { newWebhookId } from '#shared/webhook-signing';
import { deliver, type NotifyResult, settled } from './core.ts';

export async function notifyPrediction(d: BaseDeps & { s3: () => Promise<S3Client> }, master: string, predictionId: string, event: string, seq?: string): Promise<NotifyResult> {
  const predictions = new PredictionStore(d.store);
  const p = await predictions.get(predictionId);
  if (!p) throw new StepError(StepErrors.TrainerFailed, `prediction ${predictionId} does not exist`);
  if (!p.webhook) return { delivered: false, status: null, detail: 'no webhook requested' };
  if (!p.webhook_events_filter.includes(event as (typeof p.webhook_events_filter)[number])) {
    return { delivered: false, status: null, detail: `event ${event} is not in the webhook_events_filter` };
  }
  const body = JSON.stringify(await signedPredictionView(p, d.publicUrl, d.bucket, d.s3));
  const attempts = (p.webhook_outcome?.attempts ?? 0) + 1;
  const out = await deliver(d, master, { url: p.webhook, owner: p.owner, body, id: newWebhookId(p.id, seq ? `${event}:${seq}` : event) });
  // The recorded outcome is the completion webhook's; progress events are best effort.
  if (event === 'completed') await predictions.update(p.id, { webhook_outcome: { ...out.outcome, attempts } });
  return settled(p.webhook, out);
}
