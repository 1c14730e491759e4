/**
 * cdk-nag (AwsSolutions) acknowledgements, all in one place, each with its reason.
 *
 * IAM5 (wildcards) is handled by shape rather than by hashed logical id: a `*` resource is
 * acknowledged only when every action of its statement takes no resource-level permission, and
 * a scoped wildcard (`bucket/staged/*`, `repository/<prefix>/*`, ...) only when it matches one
 * of the reviewed shapes below. Anything else stays a finding and fails synth.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import { CfnPolicy } from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';
import { HouseFunction } from './constructs/function.ts';
import type { DreamboothStack } from './stack.ts';

/** Actions that accept no resource but `*`. */
export const RESOURCELESS_ACTIONS: ReadonlySet<string> = new Set([
  'xray:PutTraceSegments',
  'xray:PutTelemetryRecords',
  'xray:GetSamplingRules',
  'xray:GetSamplingTargets',
  'logs:CreateLogDelivery',
  'logs:GetLogDelivery',
  'logs:UpdateLogDelivery',
  'logs:DeleteLogDelivery',
  'logs:ListLogDeliveries',
  'logs:PutResourcePolicy',
  'logs:DescribeResourcePolicies',
  'logs:DescribeLogGroups',
  'ecr:GetAuthorizationToken',
  'states:SendTaskSuccess',
  'states:SendTaskFailure',
  'states:SendTaskHeartbeat',
]);

/** Reviewed wildcard shapes, in cdk-nag's flattened notation (`<LogicalId.Attr>`). */
const SCOPED_WILDCARDS: ReadonlyArray<{ shape: RegExp; reason: string }> = [
  {
    shape: /^<Storage\w+\.Arn>\/(staged|uploads|trainer-outputs)\/\*$/,
    reason: 'Object access is scoped to one key prefix of the data bucket; object keys derive from training ids.',
  },
  {
    shape: /^<\w+\.Arn>:\*$/,
    reason: 'Invoking a function also covers its versions and aliases (the qualified ARNs); the function itself is fixed.',
  },
  {
    shape: /^arn:<AWS::Partition>:ecr:<AWS::Region>:<AWS::AccountId>:repository\/[a-z0-9._/-]+\/\*$/,
    reason: 'One ECR repository per model under the configured prefix, created on its first version.',
  },
  {
    shape: /^arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:.+:\*$/,
    reason: "Executions of the training state machine (one per training, named by its id); the state machine is fixed.",
  },
  {
    shape: /^arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:\/aws\/codebuild\/<Build\w+>:\*$/,
    reason: "CodeBuild's default grant on its project's own log group streams (the project logs to its own group).",
  },
  {
    shape: /^arn:<AWS::Partition>:codebuild:<AWS::Region>:<AWS::AccountId>:report-group\/<Build\w+>-\*$/,
    reason: "CodeBuild's default grant on its project's own report groups.",
  },
];

function ack(scope: IConstruct, id: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `AwsSolutions-${id}`, reason });
}

export function acknowledgeFindings(stack: DreamboothStack): void {
  for (const secret of [stack.secrets.apiTokens, stack.secrets.webhookSigning, stack.secrets.callbackKey]) {
    ack(
      secret,
      'SMG4',
      'No automatic rotation: token digests are managed by the operator, the signing key is shared with webhook ' +
        'receivers and the callback key signs URLs held by running trainers. Rotate by hand.',
    );
  }
  for (const project of stack.build.projects) {
    ack(
      project,
      'CB4',
      'The project produces no artifacts (it pushes an image); CodeBuild encrypts its logs with the AWS-managed key.',
    );
  }
  for (const project of stack.build.strategy === 'append' ? stack.build.projects : []) {
    for (const action of ['s3:GetObject*', 's3:GetBucket*', 's3:List*']) {
      ack(
        project,
        `IAM5[Action::${action}]`,
        "CDK's read grant of the project's source: the bundled build script, one object of the CDK assets bucket.",
      );
    }
  }
  // Only the docker strategy runs privileged; the default append build needs no daemon.
  if (stack.build.strategy === 'docker') {
    ack(stack.build.project, 'CB3', 'Privileged mode runs the Docker daemon that builds and pushes the model image (build.strategy "docker").');
  }
  for (const fn of HouseFunction.all(stack)) {
    ack(fn, 'L1', 'Node.js 22 is the runtime the handlers are bundled for (esbuild target node22) and tested on.');
  }
  const api = stack.api.restApi;
  ack(api, 'APIG3', 'No WAF by default: every route but the callback needs a token and the stage is throttled. Attach a web ACL per deployment if needed.');
  ack(api, 'COG4', 'Clients authenticate with Replicate-style API tokens through a Lambda TOKEN authorizer, not Cognito.');
  ack(
    api,
    'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
    "API Gateway's account-level logging role needs the AWS-managed push policy for execution logs.",
  );
  ack(
    stack.api.callbackMethod,
    'APIG4',
    'Trainers cannot send API tokens: the callback is verified in the Lambda by the per-training callback secret.',
  );
  for (const policy of stack.node.findAll().filter((c): c is CfnPolicy => c instanceof CfnPolicy)) {
    acknowledgeWildcards(policy);
  }
}

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource?: unknown;
}

function acknowledgeWildcards(policy: CfnPolicy): void {
  const document = Stack.of(policy).resolve(policy.policyDocument) as { Statement?: Statement[] };
  const allows = (document.Statement ?? []).filter((s) => s.Effect === 'Allow');
  const unscoped = allows.filter((s) => [s.Resource].flat().includes('*'));
  const unscopedActions = unscoped.flatMap((s) => [s.Action].flat());
  // One finding covers every `*` statement of the policy: acknowledge it only if all are resourceless.
  if (unscoped.length && unscopedActions.every((a) => RESOURCELESS_ACTIONS.has(a))) {
    ack(policy, 'IAM5[Resource::*]', `These actions take no resource-level permission: ${unscopedActions.join(', ')}.`);
  }
  for (const resource of allows.flatMap((s) => [s.Resource].flat().map(flatten))) {
    const known = resource !== '*' && resource.includes('*') && SCOPED_WILDCARDS.find((w) => w.shape.test(resource));
    if (known) ack(policy, `IAM5[Resource::${resource}]`, known.reason);
  }
}

/** A CloudFormation value in cdk-nag's notation: `Ref` → `<Id>`, `Fn::GetAtt` → `<Id.Attr>`. */
function flatten(value: unknown): string {
  if (typeof value === 'string') return value;
  const node = value as Record<string, unknown>;
  if (node?.['Fn::Join']) {
    const [separator, parts] = node['Fn::Join'] as [string, unknown[]];
    return parts.map(flatten).join(separator);
  }
  if (node?.Ref) return `<${node.Ref as string}>`;
  if (node?.['Fn::GetAtt']) return `<${(node['Fn::GetAtt'] as string[]).join('.')}>`;
  return JSON.stringify(value);
}
