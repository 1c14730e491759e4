/**
 * Lambda Invoke's wire semantics, served by the local endpoint (../endpoint.ts): the function by
 * name, `name:qualifier` or ARN; RequestResponse, Event (202, run in the background) and DryRun;
 * a thrown error as a 200 with X-Amz-Function-Error.
 */
import type { HandlerName } from '../../constructs/function.ts';
import { AwsError, lambdaError } from '../errors.ts';

export type LocalLambda = (payload: unknown) => Promise<unknown>;

/** Runs one of the house functions with an event, as Lambda Invoke does. */
export type InvokeFunction = (fn: HandlerName, event: unknown) => Promise<unknown>;

export interface InvokeResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Lambda Invoke semantics: Event → 202 and run in the background; errors → 200 + X-Amz-Function-Error. */
export async function invokeLambda(
  lambdas: Record<string, LocalLambda>,
  functionRef: string,
  invocationType: string | undefined,
  payloadText: string,
  log: (line: string) => void,
): Promise<InvokeResult> {
  const name = functionName(functionRef);
  const fn = Object.hasOwn(lambdas, name) ? lambdas[name] : undefined;
  if (!fn) throw new AwsError('ResourceNotFoundException', `Function not found: ${name}`, 404);
  const payload = payloadText ? parsePayload(payloadText) : {};
  if (invocationType === 'DryRun') return { status: 204, headers: {}, body: '' };
  if (invocationType === 'Event') {
    fn(payload).catch((err) => log(`lambda ${name} (async) failed: ${lambdaError(err).errorType}`));
    return { status: 202, headers: {}, body: '' };
  }
  const headers = { 'content-type': 'application/json', 'x-amz-executed-version': '$LATEST' };
  try {
    const result = await fn(payload);
    return { status: 200, headers, body: JSON.stringify(result ?? null) };
  } catch (err) {
    const e = lambdaError(err);
    log(`lambda ${name} failed: ${e.errorType}`);
    return { status: 200, headers: { ...headers, 'x-amz-function-error': 'Unhandled' }, body: JSON.stringify(e) };
  }
}

/** Accepts a name, `name:qualifier`, or a function ARN (with or without qualifier). */
function functionName(ref: string): string {
  const parts = ref.startsWith('arn:') ? ref.split(':').slice(6) : ref.split(':');
  return parts[0] ?? ref;
}

function parsePayload(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new AwsError('InvalidRequestContentException', 'Could not parse request body into json');
  }
}
