/**
 * Secrets Manager (versions and staging labels) and Lambda Invoke, served locally so handlers
 * and tools call them through the unmodified SDK clients.
 */
import { z } from 'zod';
import { AwsError, lambdaError } from './errors.ts';
import { findVersion, moveStage, notFound, putVersion, type SecretStore } from './secret-store.ts';

export type LocalLambda = (payload: unknown) => Promise<unknown>;

const SecretRef = { SecretId: z.string().min(1) };
const GetSecretValue = z.object({ ...SecretRef, VersionId: z.string().optional(), VersionStage: z.string().optional() });
const PutSecretValue = z.object({
  ...SecretRef,
  SecretString: z.string(),
  ClientRequestToken: z.string().min(32).max(64).optional(),
  VersionStages: z.array(z.string().min(1)).min(1).optional(),
});
const UpdateSecretVersionStage = z.object({
  ...SecretRef,
  VersionStage: z.string().min(1),
  MoveToVersionId: z.string().optional(),
  RemoveFromVersionId: z.string().optional(),
});
const ACCOUNT = '000000000000';

/** GetSecretValue, PutSecretValue, UpdateSecretVersionStage and DescribeSecret over a SecretStore. */
export function secretsManagerApi(store: SecretStore, region: string) {
  const arn = (name: string) => `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:${name}`;
  const named = (id: string) => {
    const name = secretName(id);
    return { name, ARN: arn(name), Name: name };
  };
  return {
    GetSecretValue: (body: unknown) => {
      const { SecretId, VersionId, VersionStage } = GetSecretValue.parse(body);
      const { name, ...ids } = named(SecretId);
      const state = store.read(name);
      if (!state) throw notFound();
      const [id, version] = findVersion(state, VersionId, VersionStage);
      return { ...ids, SecretString: version.value, VersionId: id, VersionStages: version.stages, CreatedDate: version.created / 1000 };
    },
    PutSecretValue: (body: unknown) => {
      const { SecretId, SecretString, ClientRequestToken, VersionStages } = PutSecretValue.parse(body);
      const { name, ...ids } = named(SecretId);
      const out = store.update(name, (state) => putVersion(state, SecretString, ClientRequestToken, VersionStages));
      return { ...ids, VersionId: out.id, VersionStages: out.stages };
    },
    UpdateSecretVersionStage: (body: unknown) => {
      const { SecretId, VersionStage, MoveToVersionId, RemoveFromVersionId } = UpdateSecretVersionStage.parse(body);
      const { name, ...ids } = named(SecretId);
      store.update(name, (state) => moveStage(state, VersionStage, MoveToVersionId, RemoveFromVersionId));
      return ids;
    },
    DescribeSecret: (body: unknown) => {
      const { name, ...ids } = named(z.object(SecretRef).parse(body).SecretId);
      const state = store.read(name);
      if (!state) throw notFound();
      const VersionIdsToStages = Object.fromEntries(Object.entries(state).filter(([, v]) => v.stages.length).map(([id, v]) => [id, v.stages]));
      return { ...ids, VersionIdsToStages };
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
