/**
 * Each local principal's policies, read from the synthesized stack as CloudFormation would
 * deploy them: every AWS::IAM::Policy attached to the principal's role and the role's inline
 * Policies, with Ref / Fn::GetAtt / Fn::Join / Fn::Sub / Fn::Select / Fn::Split resolved to the
 * ARNs of local mode's resources (its account and region: ../names.ts). The data
 * bucket's resource-policy Deny statements (TLS only) apply to every principal.
 */
import type { CfnResource } from 'aws-cdk-lib';
import { CfnProject } from 'aws-cdk-lib/aws-codebuild';
import { CfnTable } from 'aws-cdk-lib/aws-dynamodb';
import { CfnRepository } from 'aws-cdk-lib/aws-ecr';
import { CfnPolicy, CfnRole, type IRole } from 'aws-cdk-lib/aws-iam';
import type { CfnFunction } from 'aws-cdk-lib/aws-lambda';
import { CfnLogGroup } from 'aws-cdk-lib/aws-logs';
import { CfnBucket, CfnBucketPolicy } from 'aws-cdk-lib/aws-s3';
import type { CfnSecret } from 'aws-cdk-lib/aws-secretsmanager';
import { CfnTopic } from 'aws-cdk-lib/aws-sns';
import { CfnStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { HouseFunction } from '../../constructs/function.ts';
import type { DreamboothStack } from '../../stack.ts';
import type { Statement } from '../iam/policy.ts';
import { secretArn, type Where } from '../iam/requests.ts';
import {
  BUILD_PRINCIPAL,
  ecrRepositoryArn,
  lambdaArn,
  LOCAL_ACCOUNT,
  LOCAL_BUCKET,
  LOCAL_BUILD_PROJECT,
  LOCAL_REGION,
  LOCAL_SECRET_IDS,
  LOCAL_STATE_MACHINE_ARN,
  LOCAL_TABLE,
  localRepositoryName,
  localStateMachineArn,
  roleArn,
  SAGEMAKER_JOB_PRINCIPAL,
  STATE_MACHINE_PRINCIPAL,
  stateMachinePrincipal,
  topicArn,
} from '../names.ts';

export interface LocalNames extends Where {
  bucket: string;
  table: string;
  stateMachineArn: string;
  buildProject: string;
  lambdaArn: (handler: string) => string;
  /** Local secret name of each of the stack's own secrets. */
  secrets: { apiTokens: string; webhookSigning: string; callbackKey: string };
}

export interface PrincipalPolicies {
  /** Role name as a session would show it, e.g. `WorkflowStageWeightsRoleCC877624`. */
  role: string;
  statements: Statement[];
}

/** The policies as local mode enforces them: its table, bucket, state machine and secrets. */
export function localPolicies(stack: DreamboothStack): Record<string, PrincipalPolicies> {
  return principalPolicies(stack, {
    region: LOCAL_REGION,
    account: LOCAL_ACCOUNT,
    bucket: LOCAL_BUCKET,
    table: LOCAL_TABLE,
    stateMachineArn: LOCAL_STATE_MACHINE_ARN,
    buildProject: LOCAL_BUILD_PROJECT,
    lambdaArn,
    secrets: LOCAL_SECRET_IDS,
  });
}

export function principalPolicies(stack: DreamboothStack, names: LocalNames): Record<string, PrincipalPolicies> {
  const values = localValues(stack, names);
  const resolve = (v: unknown) => resolveIntrinsics(stack.resolve(v), values, names);
  const roleOf = (role: IRole | undefined) => (role ? stack.getLogicalId(role.node.defaultChild as CfnRole) : undefined);

  const principals = new Map<string, string>(); // role logical id → principal
  for (const fn of HouseFunction.all(stack)) principals.set(roleOf(fn.role)!, fn.handlerName);
  principals.set(roleOf(stack.workflow.stateMachine.role)!, STATE_MACHINE_PRINCIPAL);
  principals.set(roleOf(stack.build.project.role)!, BUILD_PRINCIPAL);
  const jobRole = roleOf(stack.workflow.sagemaker?.jobRole);
  if (jobRole) principals.set(jobRole, SAGEMAKER_JOB_PRINCIPAL);
  for (const [role, name] of otherPrincipals(stack, names)) if (!principals.has(role)) principals.set(role, name);

  const out: Record<string, PrincipalPolicies> = {};
  for (const [role, name] of principals) out[name] = { role, statements: [] };
  const add = (role: string, doc: unknown) => {
    const name = principals.get(role);
    if (name) out[name]!.statements.push(...statementsOf(resolve(doc)));
  };
  for (const c of stack.node.findAll()) {
    if (c instanceof CfnPolicy) {
      const roles = (stack.resolve(c.roles) ?? []) as { Ref?: string }[];
      for (const r of roles) if (r.Ref) add(r.Ref, c.policyDocument);
    }
    if (c instanceof CfnRole) {
      const inline = (stack.resolve(c.policies) ?? []) as { policyDocument?: unknown; PolicyDocument?: unknown }[];
      for (const p of inline) add(stack.getLogicalId(c), p.PolicyDocument ?? p.policyDocument);
    }
  }
  const denies = bucketDenies(stack, resolve);
  for (const p of Object.values(out)) p.statements.push(...denies);
  return out;
}

/**
 * The template's other state machines' roles (each machine's principal, ../names.ts) and the
 * roles SageMaker may assume (a hosted model's execution role: the principal is the role's
 * logical id, which its ARN ends with locally).
 */
function otherPrincipals(stack: DreamboothStack, n: LocalNames): Map<string, string> {
  const out = new Map<string, string>();
  for (const c of stack.node.findAll()) {
    if (c instanceof CfnStateMachine) {
      const role = (stack.resolve(c.roleArn) as { 'Fn::GetAtt'?: [string, string] })?.['Fn::GetAtt']?.[0];
      if (role) out.set(role, stateMachinePrincipal(stateMachineArnOf(stack, c, n)));
    }
    if (c instanceof CfnRole) {
      const trust = JSON.stringify(stack.resolve(c.assumeRolePolicyDocument) ?? {});
      const id = stack.getLogicalId(c);
      if (trust.includes('sagemaker.amazonaws.com') && !out.has(id)) out.set(id, id);
    }
  }
  return out;
}

function stateMachineArnOf(stack: DreamboothStack, c: CfnStateMachine, n: LocalNames): string {
  const path = c.node.path.split('/').slice(1, -1).join('/');
  return path === 'Workflow/StateMachine' ? n.stateMachineArn : localStateMachineArn(path, stack.getLogicalId(c));
}

function statementsOf(doc: unknown): Statement[] {
  const s = (doc as { Statement?: Statement | Statement[] })?.Statement ?? [];
  return [s].flat();
}

/** Deny statements of the data bucket's policy that name every principal (`"AWS": "*"`). */
function bucketDenies(stack: DreamboothStack, resolve: (v: unknown) => unknown): Statement[] {
  const data = stack.getLogicalId(stack.storage.bucket.node.defaultChild as CfnBucket);
  const out: Statement[] = [];
  for (const c of stack.node.findAll()) {
    if (!(c instanceof CfnBucketPolicy) || (stack.resolve(c.bucket) as { Ref?: string })?.Ref !== data) continue;
    for (const s of statementsOf(resolve(c.policyDocument)) as (Statement & { Principal?: unknown })[]) {
      if (s.Effect === 'Deny' && JSON.stringify(s.Principal) === JSON.stringify({ AWS: '*' })) {
        const { Principal: _, ...rest } = s;
        out.push(rest);
      }
    }
  }
  return out;
}

interface Value {
  ref: string;
  attrs: Record<string, string>;
}

function localValues(stack: DreamboothStack, n: LocalNames): Map<string, Value> {
  const values = new Map<string, Value>();
  const arn = (service: string, rest: string) => `arn:aws:${service}:${n.region}:${n.account}:${rest}`;
  const set = (c: CfnResource, ref: string, attrs: Record<string, string> = {}) => values.set(stack.getLogicalId(c), { ref, attrs });
  for (const fn of HouseFunction.all(stack)) {
    set(fn.node.defaultChild as CfnFunction, fn.handlerName, { Arn: n.lambdaArn(fn.handlerName) });
  }
  const ownSecrets = new Map([
    [stack.secrets.apiTokens, n.secrets.apiTokens],
    [stack.secrets.webhookSigning, n.secrets.webhookSigning],
    [stack.secrets.callbackKey, n.secrets.callbackKey],
  ]);
  for (const [secret, name] of ownSecrets) set(secret.node.defaultChild as CfnSecret, secretArn(name, n));
  const data = stack.storage.bucket.node.defaultChild as CfnBucket;
  for (const c of stack.node.findAll()) {
    if (c instanceof CfnTable) set(c, n.table, { Arn: arn('dynamodb', `table/${n.table}`), StreamArn: '' });
    else if (c instanceof CfnBucket) {
      const name = c === data ? n.bucket : `${n.bucket}-${stack.getLogicalId(c).toLowerCase()}`;
      set(c, name, { Arn: `arn:aws:s3:::${name}` });
    } else if (c instanceof CfnStateMachine) {
      const machine = stateMachineArnOf(stack, c, n);
      set(c, machine, { Arn: machine, Name: machine.split(':').pop()! });
    } else if (c instanceof CfnRole) set(c, stack.getLogicalId(c), { Arn: roleArn(stack.getLogicalId(c)) });
    else if (c instanceof CfnTopic) set(c, topicArn(stack.getLogicalId(c)), { TopicArn: topicArn(stack.getLogicalId(c)), TopicName: stack.getLogicalId(c) });
    else if (c instanceof CfnLogGroup) {
      const name = `/local/${stack.getLogicalId(c)}`;
      set(c, name, { Arn: arn('logs', `log-group:${name}:*`) });
    } else if (c instanceof CfnProject) set(c, n.buildProject, { Arn: arn('codebuild', `project/${n.buildProject}`) });
    else if (c instanceof CfnRepository) {
      // Unnamed (CloudFormation names it), its name is a token that resolves to nothing.
      const name = (stack.resolve(c.repositoryName) as string | undefined) ?? localRepositoryName(stack.resolve(stack.getLogicalId(c)) as string);
      set(c, name, { Arn: ecrRepositoryArn(name) });
    }
  }
  return values;
}

const PSEUDO = (n: LocalNames): Record<string, string> => ({
  'AWS::Partition': 'aws',
  'AWS::Region': n.region,
  'AWS::AccountId': n.account,
  'AWS::URLSuffix': 'amazonaws.com',
  'AWS::StackName': 'Dreambooth',
});

/** Resources local mode does not create resolve to a placeholder no request names. */
const unresolved = (id: string) => `arn:aws:local-unresolved:::${id}`;

export function resolveIntrinsics(value: unknown, values: Map<string, Value>, n: LocalNames): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => resolveIntrinsics(v, values, n));
  const node = value as Record<string, unknown>;
  const r = (v: unknown) => resolveIntrinsics(v, values, n);
  if ('Ref' in node) {
    const id = String(node.Ref);
    return PSEUDO(n)[id] ?? values.get(id)?.ref ?? unresolved(id);
  }
  if ('Fn::GetAtt' in node) {
    const [id, attr] = node['Fn::GetAtt'] as [string, string];
    return values.get(id)?.attrs[attr] ?? unresolved(`${id}.${attr}`);
  }
  if ('Fn::Join' in node) {
    const [separator, parts] = node['Fn::Join'] as [string, unknown[]];
    return (r(parts) as unknown[]).map(String).join(separator);
  }
  if ('Fn::Split' in node) {
    const [separator, source] = node['Fn::Split'] as [string, unknown];
    return String(r(source)).split(separator);
  }
  if ('Fn::Select' in node) {
    const [index, list] = node['Fn::Select'] as [number | string, unknown];
    return (r(list) as unknown[])[Number(index)];
  }
  if ('Fn::Sub' in node) {
    const template = node['Fn::Sub'];
    if (typeof template !== 'string') throw new Error('local IAM: Fn::Sub with variables is not supported');
    return template.replace(/\$\{([^}]+)\}/g, (_, name: string) => String(r(name.includes('.') ? { 'Fn::GetAtt': name.split('.') } : { Ref: name })));
  }
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, r(v)]));
}
