/**
 * The notify function's event for a prediction (beside a training's `{training_id, event}`,
 * lambdas/shared/steps.ts): the prediction state machine's last step sends `completed`, and so
 * does the api's cancel.
 */
import { TRAINING_ID } from '../ids.ts';
import * as z from '../zod.ts';

export const PredictionNotifyEvent = z.object({
  prediction_id: z.string().check(z.regex(TRAINING_ID, 'is not a prediction id')),
  event: z._default(z.enum(['completed', 'start', 'output', 'logs']), 'completed'),
  /** Tells apart the sends of a repeated event (logs), so each has its own webhook-id. */
  seq: z.optional(z.string().check(z.maxLength(64))),
});
export type PredictionNotifyEvent = z.infer<typeof PredictionNotifyEvent>;
