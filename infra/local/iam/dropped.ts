import type { PrincipalPolicies } from '../cloudformation/policies.ts';

/**
 * `LOCAL_IAM_DROP=<principal>#<index>[,...]` removes statements (0-based, in template order)
 * before enforcement: to check that some test fails without each grant.
 */
export function withDropped(policies: Record<string, PrincipalPolicies>, spec = process.env.LOCAL_IAM_DROP): Record<string, PrincipalPolicies> {
  if (!spec) return policies;
  const out = structuredClone(policies);
  for (const item of spec.split(',')) {
    const [name, index] = item.split('#') as [string, string];
    const p = out[name];
    if (!p?.statements[Number(index)]) throw new Error(`LOCAL_IAM_DROP: ${name} has no statement ${index}`);
    p.statements[Number(index)] = { Effect: 'Deny', NotAction: '*', Resource: '*' }; // matches nothing
  }
  return out;
}
