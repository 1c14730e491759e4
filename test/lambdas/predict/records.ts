/** A prediction as the api stores it, for the serving functions' tests; `over` replaces whole fields. */
import type { BaseDeps } from '#shared/deps';
import type { PredictionRecord } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { newTrainingId } from '#shared/ids';

export async function newPrediction(d: Pick<BaseDeps, 'store'>, over: Partial<PredictionRecord> = {}): Promise<PredictionRecord> {
  const p: PredictionRecord = {
    id: newTrainingId(),
    owner: 'acme',
    model: 'acme/cjw',
    version: 'b'.repeat(64),
    input: { prompt: 'a photo of cjw person on the moon' },
    status: 'starting',
    created_at: new Date().toISOString(),
    started_at: null,
    completed_at: null,
    error: null,
    logs: '',
    output: null,
    predict_time: null,
    webhook: null,
    webhook_events_filter: ['completed'],
    endpoint: null,
    cancel_requested: false,
    webhook_outcome: null,
    expiration: Math.floor(Date.now() / 1000) + 86400,
    ...over,
  };
  if (!(await new PredictionStore(d.store).create(p))) throw new Error(`prediction ${p.id} exists already`);
  return p;
}
