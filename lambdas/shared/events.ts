/**
 * Webhook events other than the state machine's own completion webhook (`start`, `output`,
 * `logs`), sent as they happen when the training's `webhook_events_filter` asks for them. The
 * notify function runs them asynchronously, so no step waits on a client's receiver.
 */
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import type { TrainingRecord, WebhookEvent } from './training.ts';

export type Emit = (t: TrainingRecord, event: WebhookEvent, seq?: string) => Promise<void>;

/** Logs events are throttled to one per this many milliseconds per training. */
export const LOGS_EVERY_MS = 3000;

export const wants = (t: TrainingRecord, event: WebhookEvent) => Boolean(t.webhook) && t.webhook_events_filter.includes(event);

export function lambdaEmitter(client: LambdaClient, functionName: string): Emit {
  return async (t, event, seq) => {
    if (!wants(t, event)) return;
    await client.send(
      new InvokeCommand({
        FunctionName: functionName,
        InvocationType: 'Event',
        Payload: Buffer.from(JSON.stringify({ training_id: t.id, event, seq })),
      }),
    );
  };
}
