/**
 * The trainer's webhook. Not token-authorised: it checks the per-training secret in its URL
 * (and the trainer's own bearer token or signature where the backend has one). Late, replayed
 * or duplicate callbacks change nothing and answer 200, so trainers stop retrying.
 */
import type { Deps } from '#shared/deps';
import { verifyCallbackSecret } from '#shared/callback';
import { backendFor, CallbackAuthError, TransientError, type InboundRequest } from '#shared/trainers/index';
import { recordRunState, signalTask } from '#shared/runs';
import { isTerminal } from '#shared/training';

export interface CallbackResult {
  status: number;
  body: { detail: string };
}

export async function trainerCallback(
  d: Deps<'sfn' | 'secrets' | 's3'>,
  trainingId: string,
  secret: string | undefined,
  req: InboundRequest,
): Promise<CallbackResult> {
  if (!/^[a-z0-9]{20,40}$/.test(trainingId) || !(await verifyCallbackSecret(d, trainingId, secret))) {
    return { status: 401, body: { detail: 'callback secret is missing or wrong' } };
  }
  const t = await d.store.getTraining(trainingId);
  if (!t) return { status: 404, body: { detail: 'no such training' } };

  const backend = await backendFor(d.config, t.trainer, d, t.run.server);
  let state;
  try {
    state = await backend.parseCallback(req);
  } catch (e) {
    if (e instanceof CallbackAuthError) return { status: 401, body: { detail: e.message } };
    // Our side could not check it (e.g. the signing secret is unreachable): 5xx, so the trainer retries.
    if (e instanceof TransientError) throw e;
    return { status: 400, body: { detail: `callback body is not a prediction: ${(e as Error).message}` } };
  }
  if (state.runId && state.runId !== t.run.id) return { status: 200, body: { detail: 'ignored: another run' } };
  if (isTerminal(t.status) || t.run.terminal) return { status: 200, body: { detail: 'ignored: run already over' } };

  const { outcome, training } = await recordRunState(d, t, state);
  if (training) await signalTask(d, training.task_token ?? undefined, outcome);
  return { status: 200, body: { detail: 'ok' } };
}
