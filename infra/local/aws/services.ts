/**
 * Secrets Manager GetSecretValue and Lambda Invoke, served from local maps so handlers
 * call them through the unmodified SDK clients.
 */
import { z } from 'zod';
import { AwsError, lambdaError } from './errors.ts';

export type LocalLambda = (payload: unknown) => Promise<unknown>;

const GetSecretValue = z.object({ SecretId: z.string().min(1) });
const ACCOUNT = '000000000000';

export function secretsManagerApi(secrets: Record<string, string>, region: string) {
  return {
    GetSecretValue: (body: unknown) => {
      const { SecretId } = GetSecretValue.parse(body);
      const name = secretName(SecretId);
      const value = Object.hasOwn(secrets, name) ? secrets[name] : undefined;
      if (value === undefined) throw new AwsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
      return {
        ARN: `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:${name}`,
        Name: name,
        SecretString: value,
        VersionId: 'local',
        VersionStages: ['AWSCURRENT'],
        CreatedDate: 0,
      };
    },
  };
}

/** A secret ARN names the secret after `:secret:` (AWS appends a 6-character suffix, we do not). */
const secretName = (id: string) => (id.startsWith('arn:') ? id.slice(id.indexOf(':secret:') + 8) : id);

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
