/**
 * `Prefer: wait` / `Prefer: wait=n` on create (Replicate's sync mode; its client sends `wait`
 * from replicate.run): the answer is held until the prediction is terminal or the wait is over,
 * then the prediction as it is then, finished or not (the client polls an unfinished one).
 */
import { isPredictionTerminal, type PredictionRecord } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import type { Store } from '#shared/store';

/** Replicate's default and maximum wait. */
export const REPLICATE_MAX_WAIT_S = 60;
/**
 * The longest wait here: API Gateway ends every integration after 29 s (and answers 504, losing
 * the prediction's id), so the answer must leave before that, with time for the create itself
 * and the response.
 */
export const MAX_WAIT_S = 25;

/** Seconds to wait for a `Prefer` header: 0 without `wait`; capped at MAX_WAIT_S. */
export function waitSeconds(prefer: string | undefined): number {
  if (!prefer) return 0;
  for (const pref of prefer.split(',')) {
    const m = /^\s*wait(?:\s*=\s*"?(\d+)"?)?\s*(?:;.*)?$/i.exec(pref);
    if (!m) continue;
    const asked = m[1] === undefined ? REPLICATE_MAX_WAIT_S : Math.min(Number(m[1]), REPLICATE_MAX_WAIT_S);
    return Math.min(asked, MAX_WAIT_S);
  }
  return 0;
}

const FIRST_POLL_MS = 50;
const MAX_POLL_MS = 500;

/**
 * Re-reads the record until it is terminal or `seconds` have passed: a short first poll (a
 * warm endpoint answers in well under a second), doubling to MAX_POLL_MS. Consistent reads,
 * one item each: cheap next to the prediction.
 */
export async function waitForTerminal(store: Store, p: PredictionRecord, seconds: number): Promise<PredictionRecord> {
  const predictions = new PredictionStore(store);
  const deadline = Date.now() + seconds * 1000;
  let current = p;
  let delay = FIRST_POLL_MS;
  while (!isPredictionTerminal(current.status)) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)));
    delay = Math.min(delay * 2, MAX_POLL_MS);
    current = (await predictions.get(p.id)) ?? current;
  }
  return current;
}
