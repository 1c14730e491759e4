/**
 * SageMaker's notification that a request ended (through the success or error topic) ends the
 * prediction's wait: SendTaskSuccess with where the response is, or SendTaskFailure with why.
 * A notification for no prediction, for one already ended, or whose wait is gone (the
 * execution was stopped) is logged and dropped: SNS would only send it again.
 */
import { SendTaskFailureCommand, SendTaskSuccessCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { BaseDeps } from '#shared/deps';
import type { Logger } from '#shared/log';
import { isPredictionTerminal } from '#shared/predictions/record';
import { PredictionStore } from '#shared/predictions/store';
import { AsyncInferenceNotification, type SnsEvent } from '#shared/serving/notification';
import { type InferenceFailureCause, PredictionErrors, type PredictionResponse } from '#shared/serving/steps';

export interface NotifiedDeps extends BaseDeps {
  sfn: SFNClient;
}

/** SendTask* answers for a wait that no longer exists. */
const GONE = new Set(['TaskDoesNotExist', 'TaskTimedOut', 'InvalidToken']);

export type Outcome = 'success sent' | 'failure sent' | 'dropped';

export async function onNotifications(d: NotifiedDeps, event: SnsEvent, log: Logger): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const record of event.Records) out.push(await onNotification(d, record.Sns.Message, log));
  return out;
}

async function onNotification(d: NotifiedDeps, message: string, log: Logger): Promise<Outcome> {
  let n: AsyncInferenceNotification;
  try {
    n = AsyncInferenceNotification.parse(JSON.parse(message));
  } catch (e) {
    log.warn('dropped a notification that is not asynchronous inference\'s', { error: (e as Error).message });
    return 'dropped';
  }
  const l = log.with({ prediction_id: n.inferenceId, invocation_status: n.invocationStatus });
  const p = await new PredictionStore(d.store).get(n.inferenceId);
  if (!p || isPredictionTerminal(p.status) || !p.task_token) {
    l.info('dropped a notification', { reason: !p ? 'no such prediction' : p.task_token ? `the prediction is ${p.status}` : 'no wait for it' });
    return 'dropped';
  }
  try {
    if (n.invocationStatus === 'Completed' && n.responseParameters.outputLocation) {
      const output: PredictionResponse = { output_location: n.responseParameters.outputLocation };
      await d.sfn.send(new SendTaskSuccessCommand({ taskToken: p.task_token, output: JSON.stringify(output) }));
      l.info('the request succeeded');
      return 'success sent';
    }
    const cause: InferenceFailureCause = { reason: n.failureReason ?? `the request ended ${n.invocationStatus}`, failure_location: n.responseParameters.failureLocation };
    await d.sfn.send(new SendTaskFailureCommand({ taskToken: p.task_token, error: PredictionErrors.InferenceFailed, cause: JSON.stringify(cause) }));
    l.info('the request failed', { reason: cause.reason });
    return 'failure sent';
  } catch (e) {
    if (!GONE.has((e as Error).name)) throw e;
    l.info('dropped a notification', { reason: `its wait is gone (${(e as Error).name})` });
    return 'dropped';
  }
}
