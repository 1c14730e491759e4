/**
 * The Lambda integration in local mode: a Task state that invokes a function, directly (its
 * effective input is the event) or with a task token (`lambda:invoke.waitForTaskToken`, whose
 * input is `{ FunctionName, Payload }`), after the check Step Functions makes of its role.
 */
import type { HandlerName } from '../../constructs/function.ts';
import { lambdaArn } from '../names.ts';
import type { StandInContext } from '../stepfunctions/stand-in.ts';
import type { TaskHandler } from '../stepfunctions/tasks.ts';

export type LambdaTarget = { kind: 'lambda'; handler: HandlerName; integration: 'direct' | 'waitForTaskToken' };

/** The Lambda event of a Task's effective input: `Payload` for a callback task, else the input itself. */
export function lambdaEvent(target: { kind: string }, input: unknown): unknown {
  if (target.kind === 'lambda' && (target as LambdaTarget).integration === 'waitForTaskToken') {
    return (input as { Payload?: unknown } | null)?.Payload;
  }
  return input;
}

export function lambdaTask(target: LambdaTarget, ctx: StandInContext): TaskHandler {
  return async (input) => {
    const services = await ctx.services;
    services.checkIntegration('lambda:InvokeFunction', lambdaArn(target.handler), 'Lambda.AWSLambdaException', ctx.principal);
    return services.invoke(target.handler, lambdaEvent(target, input));
  };
}
