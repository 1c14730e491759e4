/**
 * Operator secrets encrypted with a customer-managed KMS key (`secret_kms_keys`): whoever may
 * read such a secret may decrypt with its key, through Secrets Manager only, and no one else;
 * the configuration refuses keys it cannot use; local mode reads the template as before.
 */
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig } from '#shared/config';
import { localPolicies } from '#infra/local/cloudformation/policies';
import { DreamboothStack } from '#infra/stack';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();
const key = (n: number, region = 'us-east-1') => `arn:aws:kms:${region}:123456789012:key/0000000${n}-1111-2222-3333-444444444444`;
const REPLICATE_TOKEN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:replicate-token-AbCdEf';
const KEYS: Record<string, string> = {
  'cog-auth': key(1),
  'cog-upload': key(2),
  [REPLICATE_TOKEN]: key(3),
  'source-creds': key(4),
  'registry-creds': key(5),
};
const TRAINERS = {
  cog: { backend: 'cog', url: 'http://cog.internal:5000', webhook_auth_token_secret: 'cog-auth', upload_token_secret: 'cog-upload' },
  rep: { backend: 'replicate', api_token_secret: REPLICATE_TOKEN },
  gpu: { backend: 'sagemaker', image: `r8.im/acme/trainer@sha256:${'c'.repeat(64)}`, source_credentials_secret: 'source-creds' },
  // Read like the others, but under aws/secretsmanager: no key, no grant.
  plain: { backend: 'cog', url: 'http://cog2.internal:5000', webhook_auth_token_secret: 'plain-auth' },
};
const REGISTRY = { type: 'oci', host: 'registry.example.com/acme', credentials_secret: 'registry-creds' };

const raw = (keys: Record<string, string> = KEYS) => mergeConfig(cdkJson.context.dreambooth, { trainers: TRAINERS, registry: REGISTRY, secret_kms_keys: keys });

function synth(keys?: Record<string, string>, region?: string) {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new DreamboothStack(app, 'Dreambooth', { config: parseConfig(raw(keys)), ...(region ? { env: { region } } : {}) });
  return { app, stack, template: Template.fromStack(stack) };
}

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

/** Each role (by logical id) with the statements of every policy attached to it. */
function statementsByRole(template: Template): Map<string, Statement[]> {
  const byRole = new Map<string, Statement[]>();
  for (const policy of Object.values(template.findResources('AWS::IAM::Policy'))) {
    for (const role of policy.Properties.Roles as { Ref: string }[]) {
      byRole.set(role.Ref, [...(byRole.get(role.Ref) ?? []), ...(policy.Properties.PolicyDocument.Statement as Statement[])]);
    }
  }
  return byRole;
}

const viaService = (region: string) =>
  region === '${AWS::Region}' ? { 'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.amazonaws.com']] } : `secretsmanager.${region}.amazonaws.com`;
const allows = (s: Statement, action: string) => s.Effect === 'Allow' && [s.Action].flat().includes(action);
/** The secret's name inside a granted ARN: `secret:<name>-??????`, or the complete ARN itself. */
const grantsSecret = (s: Statement, secret: string) =>
  allows(s, 'secretsmanager:GetSecretValue') &&
  [s.Resource].flat().some((r) => (secret.startsWith('arn:') ? JSON.stringify(r) === JSON.stringify(secret) : JSON.stringify(r).includes(`:secret:${secret}-??????`)));

describe('secret_kms_keys', () => {
  let template: Template;
  let byRole: Map<string, Statement[]>;
  let stack: DreamboothStack;

  beforeAll(() => {
    ({ template, stack } = synth());
    byRole = statementsByRole(template);
  }, 120_000);

  it.each(Object.keys(KEYS))('lets exactly the readers of %s decrypt with its key, through Secrets Manager only', (secret) => {
    const readers = [...byRole].filter(([, ss]) => ss.some((s) => grantsSecret(s, secret))).map(([r]) => r).sort();
    const decrypters = [...byRole].filter(([, ss]) => ss.some((s) => allows(s, 'kms:Decrypt') && [s.Resource].flat().includes(KEYS[secret]))).map(([r]) => r).sort();
    expect(readers.length).toBeGreaterThan(0);
    expect(decrypters).toEqual(readers);
    for (const [, ss] of byRole) {
      for (const s of ss.filter((x) => allows(x, 'kms:Decrypt') && [x.Resource].flat().includes(KEYS[secret]))) {
        // Decrypted by Secrets Manager in the secret's region: a name's is the stack's.
        const region = secret.startsWith('arn:') ? secret.split(':')[3] : '${AWS::Region}';
        expect(s.Condition).toEqual({ StringEquals: { 'kms:ViaService': viaService(region!) } });
        expect([s.Action].flat()).toEqual(['kms:Decrypt']);
      }
    }
  });

  it('reaches the build projects (registry credentials) and the mirror project (the trainer image source)', () => {
    const roleOf = (p: { role?: { node: { defaultChild?: unknown } } }) => stack.getLogicalId(p.role!.node.defaultChild as never);
    const decrypts = (role: string, k: string) => (byRole.get(role) ?? []).some((s) => allows(s, 'kms:Decrypt') && [s.Resource].flat().includes(k));
    for (const project of stack.build.projects) expect(decrypts(roleOf(project), KEYS['registry-creds']!)).toBe(true);
    expect(decrypts(roleOf(stack.workflow.sagemaker!.mirrorProject), KEYS['source-creds']!)).toBe(true);
    expect(decrypts(roleOf(stack.workflow.sagemaker!.mirrorProject), KEYS['registry-creds']!)).toBe(false);
  });

  it('grants no other key, and none for a secret without one', () => {
    const decrypted = new Set([...byRole.values()].flat().filter((s) => allows(s, 'kms:Decrypt')).flatMap((s) => [s.Resource].flat()));
    expect(decrypted).toEqual(new Set(Object.values(KEYS)));
  });

  it('adds no cdk-nag finding', () => {
    const findings = (app: App) => new AwsSolutionsChecks().validateScope(app).violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`).sort();
    expect(findings(synth().app)).toEqual(findings(synth({}).app));
  }, 240_000);

  it('leaves local mode reading the template: every principal resolves, the keys beside the secrets', () => {
    const policies = localPolicies(stack);
    const decrypting = Object.values(policies).filter((p) => p.statements.some((s) => [s.Action].flat().includes('kms:Decrypt')));
    expect(decrypting.length).toBeGreaterThan(0);
  });
});

describe('secret_kms_keys refuses what Secrets Manager would', () => {
  const refusal = (keys: Record<string, string>) => () => parseConfig(raw(keys));

  it('a key for a secret the configuration does not name', () => {
    expect(refusal({ 'replicate-tokn': key(1) })).toThrow(/dreambooth\.secret_kms_keys\.replicate-tokn: names no secret of this configuration \(cog-auth, cog-upload, .*registry-creds\)/);
  });

  it('an alias or anything but a key ARN', () => {
    expect(refusal({ 'cog-auth': 'arn:aws:kms:us-east-1:123456789012:alias/secrets' })).toThrow(/dreambooth\.secret_kms_keys\.cog-auth: must be a KMS key ARN/);
  });

  it("a key in another region than the secret's ARN", () => {
    expect(refusal({ [REPLICATE_TOKEN]: key(3, 'eu-west-1') })).toThrow(/the key is in eu-west-1, the secret in us-east-1/);
  });

  it("a key in another region than the stack, for a secret named without an ARN (synth)", () => {
    expect(() => synth({ 'cog-auth': key(1, 'eu-west-1') }, 'us-east-1')).toThrow(/dreambooth\.secret_kms_keys\.cog-auth: the key is in eu-west-1, the secret in this stack's region us-east-1/);
  });
});
