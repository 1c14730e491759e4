/**
 * IAM policy evaluation for local mode: identity policies (and Deny statements of resource
 * policies) decide each call, as AWS's evaluation logic does for one account with no SCPs,
 * permission boundaries or session policies: an explicit Deny wins, then an Allow, else the
 * call is implicitly denied.
 *
 * Hand-written on purpose: the evaluators on npm that know the service authorization reference
 * (@cloud-copilot/iam-simulate, iam-policy, iam-expand) are AGPL-3.0, which this Apache-2.0
 * project does not take on. Only what the synthesized template uses is implemented (Action /
 * NotAction, Resource / NotResource with `*` and `?`, and the condition operators below); any
 * other operator throws, so a template that starts using one fails loudly instead of being
 * evaluated wrongly.
 */

export interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: Record<string, Record<string, string | string[] | boolean>>;
}

export interface AuthRequest {
  /** `service:Action`, e.g. `s3:GetObject`. */
  action: string;
  /** The resource's ARN, or `*` for actions that take no resource. */
  resource: string;
  /** Request context keys (`aws:SecureTransport`, `s3:prefix`, ...); absent keys are absent. */
  context?: Record<string, string | string[] | undefined>;
}

export type Decision = 'Allow' | 'ExplicitDeny' | 'ImplicitDeny';

export function evaluate(statements: readonly Statement[], request: AuthRequest): Decision {
  let allowed = false;
  for (const s of statements) {
    if (!applies(s, request)) continue;
    if (s.Effect === 'Deny') return 'ExplicitDeny';
    allowed = true;
  }
  return allowed ? 'Allow' : 'ImplicitDeny';
}

function applies(s: Statement, r: AuthRequest): boolean {
  const actionHit = s.Action !== undefined ? anyMatch(s.Action, r.action, true) : !anyMatch(s.NotAction ?? [], r.action, true);
  if (!actionHit) return false;
  const resourceHit = s.Resource !== undefined ? anyMatch(s.Resource, r.resource, false) : !anyMatch(s.NotResource ?? [], r.resource, false);
  if (!resourceHit) return false;
  return conditionsHold(s.Condition ?? {}, r.context ?? {});
}

function anyMatch(patterns: string | string[], value: string, ignoreCase: boolean): boolean {
  return [patterns].flat().some((p) => wildcard(p, ignoreCase).test(value));
}

const cache = new Map<string, RegExp>();
/** IAM wildcards: `*` any run of characters (`:` and `/` included), `?` one character. */
export function wildcard(pattern: string, ignoreCase = false): RegExp {
  const key = `${ignoreCase ? 'i' : 's'}${pattern}`;
  let re = cache.get(key);
  if (!re) {
    const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    re = new RegExp(`^${body}$`, ignoreCase ? 'is' : 's');
    cache.set(key, re);
  }
  return re;
}

type Test = (actual: string, expected: string) => boolean;

/** The operators, by name without `IfExists`. Arn* compare like StringLike (ARNs are case-sensitive). */
const OPERATORS: Record<string, { test: Test; negated?: boolean }> = {
  StringEquals: { test: (a, e) => a === e },
  StringNotEquals: { test: (a, e) => a === e, negated: true },
  StringEqualsIgnoreCase: { test: (a, e) => a.toLowerCase() === e.toLowerCase() },
  StringNotEqualsIgnoreCase: { test: (a, e) => a.toLowerCase() === e.toLowerCase(), negated: true },
  StringLike: { test: (a, e) => wildcard(e).test(a) },
  StringNotLike: { test: (a, e) => wildcard(e).test(a), negated: true },
  ArnEquals: { test: (a, e) => a === e },
  ArnNotEquals: { test: (a, e) => a === e, negated: true },
  ArnLike: { test: (a, e) => wildcard(e).test(a) },
  ArnNotLike: { test: (a, e) => wildcard(e).test(a), negated: true },
  Bool: { test: (a, e) => a.toLowerCase() === e.toLowerCase() },
};

function conditionsHold(conditions: NonNullable<Statement['Condition']>, context: NonNullable<AuthRequest['context']>): boolean {
  for (const [rawOperator, entries] of Object.entries(conditions)) {
    if (rawOperator === 'Null') {
      for (const [key, expected] of Object.entries(entries)) {
        if (String(expected).toLowerCase() === 'true' ? context[key] !== undefined : context[key] === undefined) return false;
      }
      continue;
    }
    const ifExists = rawOperator.endsWith('IfExists');
    const name = ifExists ? rawOperator.slice(0, -'IfExists'.length) : rawOperator;
    const op = OPERATORS[name];
    if (!op) throw new Error(`local IAM: condition operator ${rawOperator} is not implemented`);
    for (const [key, expected] of Object.entries(entries)) {
      const actual = context[key];
      if (actual === undefined) {
        // A missing key fails every operator but the IfExists forms (and the negated ones pass).
        if (ifExists) continue;
        if (op.negated) continue;
        return false;
      }
      const values = [expected].flat().map(String);
      const hit = [actual].flat().some((a) => values.some((e) => op.test(a, e)));
      if (op.negated ? hit : !hit) return false;
    }
  }
  return true;
}
