/**
 * What EventBridge delivers on AWS: each "Step Functions Execution Status Change" of a state
 * machine, to the functions the stack's rules on that machine target for that status.
 */
import type { SynthesizedDefinition } from './cloudformation/state-machine.ts';
import type { InvokeFunction } from './lambda/invoke.ts';

/** Delivers one status change to every rule's target that matches it; a target's failure is told, not thrown. */
export function statusChangeDelivery(
  targets: SynthesizedDefinition['executionStatusTargets'],
  invoke: InvokeFunction,
  note: (line: string) => void,
) {
  return async (executionArn: string, name: string, status: string): Promise<void> => {
    for (const target of targets.filter((t) => t.statuses.includes(status))) {
      try {
        await invoke(target.handler, executionStatusChange(executionArn, name, status));
      } catch (err) {
        note(`${target.handler} could not handle the end of ${name}: ${(err as Error).message}`);
      }
    }
  };
}

function executionStatusChange(executionArn: string, name: string, status: string) {
  return {
    source: 'aws.states',
    'detail-type': 'Step Functions Execution Status Change',
    resources: [executionArn],
    detail: { executionArn, stateMachineArn: stateMachineOf(executionArn), name, status },
  };
}

/** `arn:aws:states:<region>:<account>:execution:<machine>:<name>` → the machine's ARN. */
export function stateMachineOf(executionArn: string): string {
  return executionArn.replace(':execution:', ':stateMachine:').split(':').slice(0, 7).join(':');
}
