/**
 * Each function's principal and environment in local mode, as on AWS: exactly the variables its
 * declaration gives it (infra/functions.ts), the baked configuration, the local endpoints, and
 * its own credentials (derived from its name, a secret key kept in the data directory), so that
 * every SDK call a function makes is signed as that function and a local service can tell, from
 * the key id, whose call it is and which role's policies apply.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '#shared/config';
import { bakedEnv, type HandlerName } from '../../constructs/function.ts';
import { environmentOf, type EnvironmentValues } from '../../functions.ts';
import type { SynthesizedFunction } from '../cloudformation/synthesize.ts';
import { accessKeyIdOf } from '../iam/principals.ts';

/** A function as a principal of the local services. */
export interface LocalPrincipal {
  fn: HandlerName;
  /** The function's role in the synthesized template: whose policies apply to its calls. */
  roleLogicalId: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * One principal per synthesized function. The secret keys persist in the data directory: URLs a
 * function presigned stay valid across a restart, as they do on AWS until they expire.
 */
export function localPrincipals(dataDir: string, functions: SynthesizedFunction[]): LocalPrincipal[] {
  const file = join(dataDir, 'principals.json');
  const keys = (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {}) as Record<string, string>;
  const principals = functions.map((f) => {
    keys[f.name] ??= randomBytes(30).toString('base64');
    return { fn: f.name, roleLogicalId: f.roleLogicalId, accessKeyId: accessKeyIdOf(f.name), secretAccessKey: keys[f.name]! };
  });
  writeFileSync(file, JSON.stringify(keys, null, 2) + '\n', { mode: 0o600 });
  return principals;
}

/**
 * Variables of the runtime itself, as Lambda sets its own (PATH, TZ, …); nothing of the caller's.
 * Below Node 22, main.ts also turns off the SDK's Node-version warning: each function's SDK would
 * print it again.
 */
const RUNTIME_VARIABLES = ['PATH', 'HOME', 'TMPDIR', 'TZ', 'LANG', 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'];

export interface LocalEnvironmentOptions {
  config: Config;
  values: EnvironmentValues;
  /** The local endpoints and SDK settings (`AWS_ENDPOINT_URL_*`, region, checksums), without credentials. */
  awsEnv: Record<string, string>;
  principal: LocalPrincipal;
}

/** One function's whole environment in local mode. */
export function localEnvironment(fn: HandlerName, o: LocalEnvironmentOptions): Record<string, string> {
  const runtime = Object.fromEntries(RUNTIME_VARIABLES.flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : [])));
  const { AWS_ACCESS_KEY_ID: _id, AWS_SECRET_ACCESS_KEY: _key, ...aws } = o.awsEnv;
  return {
    ...runtime,
    ...aws,
    AWS_LAMBDA_FUNCTION_NAME: fn,
    AWS_ACCESS_KEY_ID: o.principal.accessKeyId,
    AWS_SECRET_ACCESS_KEY: o.principal.secretAccessKey,
    ...environmentOf(fn, o.values),
    ...bakedEnv(o.config, fn),
  };
}
