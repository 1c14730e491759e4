/**
 * Local mode's IAM: each function runs as its own principal (its own credentials, in its own
 * worker thread: ../lambda/), and the local services allow or deny each call by that
 * principal's policies from the synthesized template. See ./proxy.ts for the services,
 * ../cloudformation/policies.ts for the policies.
 */
import type { PrincipalPolicies } from '../cloudformation/policies.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION, STATE_MACHINE_PRINCIPAL } from '../names.ts';
import type { LocalS3, LocalService } from '../storage-host.ts';
import { credentialsOf, makePrincipals, type Credentials } from './principals.ts';
import { authorize, decideS3, deniedMessage, startAuthProxy, type Authority, type Denial, type Principal } from './proxy.ts';

export interface LocalIam {
  /** The credentials of a function (by handler name), `state-machine` or `build`. */
  credentials(principal: string): Credentials;
  /** Calls refused so far. */
  denials: Denial[];
  /** Null when `principal` may do `action` on `resource`; else AWS's AccessDenied message. */
  check(principal: string, action: string, resource: string): string | null;
  principals: ReadonlyMap<string, Principal>;
}

export interface EnforceOptions {
  policies: Record<string, PrincipalPolicies>;
  dataDir: string;
  /** Local mode's own key pair, which no policy limits. */
  operator: Credentials;
  /** The servers IAM stands in front of. */
  upstream: { s3: LocalS3; dynamodb: string; endpoint: string };
  /** Keeps a proxy among the services to close. */
  keep: (service: LocalService) => LocalService;
  log: (line: string) => void;
  onDenial?: (d: Denial) => void;
  /** The functions' own keys; the other principals' are derived. */
  given?: Credentials[];
}

/**
 * Gates local S3 and puts the authorising proxies in front of the two other servers; handlers
 * are pointed at them (`urls`).
 */
export async function enforceIam(o: EnforceOptions): Promise<{ urls: { s3: string; dynamodb: string; endpoint: string }; iam: LocalIam }> {
  const principals = makePrincipals(o.dataDir, o.policies, o.operator, o.given);
  // s3rver accepts only access key ids it knows (it checks no V4 signature: the proxy does).
  await o.upstream.s3.addKeys([...principals.values()].map((p) => ({ accessKeyId: p.accessKeyId, secretAccessKey: p.secretAccessKey })));
  const authority: Authority = { principals, denials: [], log: o.log, onDenial: o.onDenial, region: LOCAL_REGION, account: LOCAL_ACCOUNT };
  await o.upstream.s3.gate((request) => decideS3(authority, request));
  const dynamodb = o.keep(await startAuthProxy('dynamodb', o.upstream.dynamodb, authority));
  const endpoint = o.keep(await startAuthProxy('endpoint', o.upstream.endpoint, authority));
  const byName = (name: string) => [...principals.values()].find((p) => p.name === name);
  const iam: LocalIam = {
    credentials: (name) => credentialsOf(principals, name),
    denials: authority.denials,
    principals,
    check(name, action, resource) {
      const principal = byName(name);
      if (!principal) return `local IAM: no principal named ${name}`;
      const denial = authorize(authority, principal, [{ service: action.split(':')[0]!, action, resource }]);
      return denial && deniedMessage(authority, principal, denial);
    },
  };
  return { urls: { s3: o.upstream.s3.url, dynamodb: dynamodb.url, endpoint: endpoint.url }, iam };
}

/**
 * A Task state's service integration, checked against the state machine's role as Step
 * Functions does before it calls the service; refused, the task fails with the integration's
 * error name (`Lambda.AWSLambdaException`, `CodeBuild.AWSCodeBuildException`).
 */
export function checkIntegration(iam: LocalIam | undefined, action: string, resource: string, errorName: string, principal = STATE_MACHINE_PRINCIPAL): void {
  const denied = iam?.check(principal, action, resource);
  if (denied) throw Object.assign(new Error(denied), { name: errorName });
}
