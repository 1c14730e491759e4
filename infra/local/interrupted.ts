/**
 * Executions that were running when local mode last stopped resume on the next start; one that
 * cannot (its state is gone from the definition, its machine from the template) ends truthfully,
 * by its machine — a training is marked failed, a prediction too (when the template has the
 * prediction functions), each with its webhook and the reason — and the rules on the
 * execution's end get its status change (FAILED).
 */
import type { LocalAws } from './aws.ts';
import type { LocalStateMachine } from './cloudformation/state-machine.ts';
import { stateMachineOf, statusChangeDelivery } from './eventbridge.ts';
import type { InvokeFunction } from './lambda/invoke.ts';
import { LOCAL_PREDICTION_STATE_MACHINE_ARN, LOCAL_STATE_MACHINE_ARN } from './names.ts';

interface Settler {
  what: string;
  /** The function that records the failure; skipped when the template has none. */
  record: 'record' | 'record-prediction';
  event: (id: string, why: string) => { failure: Record<string, unknown>; notify: Record<string, unknown> };
}

const SETTLERS: Record<string, Settler> = {
  [LOCAL_STATE_MACHINE_ARN]: {
    what: 'training',
    record: 'record',
    event: (id, why) => ({
      failure: { action: 'failure', training_id: id, error: { Error: 'Local.Interrupted', Cause: `local mode stopped while this training ran and ${why}; start a new training` } },
      notify: { training_id: id, event: 'completed' },
    }),
  },
  [LOCAL_PREDICTION_STATE_MACHINE_ARN]: {
    what: 'prediction',
    record: 'record-prediction',
    event: (id, why) => ({
      failure: { action: 'failure', prediction_id: id, error: { Error: 'Local.Interrupted', Cause: `local mode stopped while this prediction ran and ${why}; run it again` } },
      notify: { prediction_id: id, event: 'completed' },
    }),
  },
};

export async function settleLastStop(
  aws: LocalAws,
  machines: LocalStateMachine[],
  deployed: ReadonlySet<string>,
  invoke: InvokeFunction,
  note: (line: string) => void,
): Promise<void> {
  for (const ex of aws.executions.interrupted) {
    const settler = SETTLERS[ex.stateMachineArn];
    if (!settler || !deployed.has(settler.record)) continue;
    const why = (ex.cause ?? '').replace(/^local mode /, '') || 'could not resume it';
    const { failure, notify } = settler.event(ex.name, why);
    try {
      await invoke(settler.record as never, failure);
      if (deployed.has('notify')) await invoke('notify', notify).catch(() => undefined);
      note(`${settler.what} ${ex.name} was interrupted by the last stop and ${why}: marked failed`);
    } catch (e) {
      note(`could not settle interrupted ${settler.what} ${ex.name}: ${(e as Error).message}`);
    }
  }
  for (const ex of aws.executions.interrupted) {
    const machine = machines.find((m) => m.arn === stateMachineOf(ex.executionArn));
    if (!machine) continue;
    await statusChangeDelivery(machine.definition.executionStatusTargets, invoke, note)(ex.executionArn, ex.name, 'FAILED');
  }
}
