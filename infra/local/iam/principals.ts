/**
 * Local credentials: one key pair per principal (each function, the state machine's role, the
 * build's role), derived from a key kept in the data directory so that URLs presigned before a
 * restart still verify, and the operator's (local mode itself: creating the bucket and table,
 * as CloudFormation does on AWS), which is not subject to policies.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Principal } from './proxy.ts';
import type { PrincipalPolicies } from '../cloudformation/policies.ts';

export const OPERATOR = 'operator';

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** `trainer-callback` → `LOCALTRAINERCALLBACK`: who signed a request is readable in its signature (a function's, ../lambda/environment.ts, or a role's). */
export function accessKeyIdOf(name: string): string {
  return `LOCAL${name.toUpperCase().replace(/[^A-Z0-9]/g, '')}`;
}

function localKey(dataDir: string): Buffer {
  const path = join(dataDir, 'iam-key');
  if (existsSync(path)) return Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
  const key = randomBytes(32);
  writeFileSync(path, key.toString('base64'), { mode: 0o600 });
  return key;
}

/** `given`: the functions' own keys (../lambda/environment.ts); the other principals' are derived here. */
export function makePrincipals(dataDir: string, policies: Record<string, PrincipalPolicies>, operator: Credentials, given: Credentials[] = []): Map<string, Principal> {
  const key = localKey(dataDir);
  const out = new Map<string, Principal>();
  for (const [name, p] of Object.entries(policies)) {
    const accessKeyId = accessKeyIdOf(name);
    const secretAccessKey = given.find((g) => g.accessKeyId === accessKeyId)?.secretAccessKey ?? createHmac('sha256', key).update(name).digest('base64url');
    out.set(accessKeyId, { name, role: p.role, accessKeyId, secretAccessKey, statements: p.statements });
  }
  out.set(operator.accessKeyId, { name: OPERATOR, role: null, ...operator, statements: [] });
  return out;
}

/** A principal's credentials by name (its function's handler name, `state-machine`, `build`). */
export function credentialsOf(principals: ReadonlyMap<string, Principal>, name: string): Credentials {
  for (const p of principals.values()) if (p.name === name) return { accessKeyId: p.accessKeyId, secretAccessKey: p.secretAccessKey };
  throw new Error(`local IAM: no principal named ${name}`);
}
