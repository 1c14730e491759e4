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
import { ROUTES, type Route, type RouteAuth } from '#shared/routes';
import type { PublicApi } from './constructs/api.ts';
import type { ModelBuild } from './constructs/build.ts';
import { HouseFunction } from './constructs/function.ts';
import type { SageMakerTraining } from './constructs/training-jobs.ts';
import type { Secrets } from './constructs/secrets.ts';

/** Why a route of the route table needs no API token. */
const NO_TOKEN_REASON: Record<Exclude<RouteAuth, 'token'>, string> = {
  self: 'Trainers cannot send API tokens: the Lambda verifies the per-training callback secret or the trainer upload token in constant time.',
  public: 'The OpenAPI document describes the interface only (as the README does) and carries no data; tools fetch it without credentials.',
};

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
  // Scoped by a condition on its namespace instead (SageMaker's job metrics).
  'cloudwatch:PutMetricData',
  'states:SendTaskSuccess',
  'states:SendTaskFailure',
  'states:SendTaskHeartbeat',
  // The sweep lists the endpoints and keeps to the stack's prefix.
  'sagemaker:ListEndpoints',
  // Scalable targets and policies are named by ids Application Auto Scaling generates, not by endpoint.
  'application-autoscaling:RegisterScalableTarget',
  'application-autoscaling:DescribeScalableTargets',
  'application-autoscaling:DeregisterScalableTarget',
  'application-autoscaling:PutScalingPolicy',
]);

/**
 * An ARN's partition, region and account as CDK writes them: the pseudo parameter, or a literal
 * value. The CLI always gives the app a region (CDK_DEFAULT_REGION, `us-east-1` when none is
 * configured) and bin/app.ts passes it as the stack's `env`; with `env.account`, the account is
 * literal too. An acknowledgement must hold in any of them.
 */
const PARTITION = '(?:<AWS::Partition>|aws(?:-[a-z]+)*)';
const REGION = String.raw`(?:<AWS::Region>|[a-z]{2}(?:-[a-z]+)+-\d+)`;
const ACCOUNT = String.raw`(?:<AWS::AccountId>|\d{12})`;

/** A reviewed ARN shape: `service` and `resource` are regular expression sources. */
const arn = (service: string, resource: string) => new RegExp(`^arn:${PARTITION}:${service}:${REGION}:${ACCOUNT}:${resource}$`);

/**
 * The state machine's name inside an ARN: `<Id.Name>`, or, in a stack with a literal region,
 * the sixth field of its ARN (`{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"Id"}]}]}`).
 */
const STATE_MACHINE_NAME = String.raw`(?:<(?:Workflow|Serving)\w+\.Name>|\{"Fn::Select":\[6,\{"Fn::Split":\[":",\{"Ref":"(?:Workflow|Serving)\w+"\}\]\}\]\})`;

/** Reviewed wildcard shapes, in cdk-nag's flattened notation (`<LogicalId.Attr>`). */
const SCOPED_WILDCARDS: ReadonlyArray<{ shape: RegExp; reason: string }> = [
  {
    shape: /^<Storage\w+\.Arn>\/(staged|uploads|trainer-outputs|sagemaker|logs|predictions|weights)\/\*$/,
    reason: 'Object access is scoped to one key prefix of the data bucket; object keys derive from training or prediction ids (weights/: from the weights sha256).',
  },
  {
    shape: /^<Storage\w+\.Arn>\/predictions\/\*(\/request\.json|\.out)$/,
    reason: "A prediction endpoint's role: each prediction's request object (read), and the responses named after prediction ids (written).",
  },
  {
    shape: arn('sagemaker', String.raw`(model|endpoint-config|endpoint)/db-[0-9a-f]{8}-p-\*`),
    reason: "Endpoints, their configurations and models are named <stack prefix><version id>: this stack's only.",
  },
  {
    shape: arn('cloudwatch', String.raw`alarm:db-[0-9a-f]{8}-p-\*`),
    reason: "Each endpoint's scale-from-zero alarm is named after the endpoint: this stack's only.",
  },
  {
    shape: arn('logs', String.raw`log-group:/aws/sagemaker/Endpoints/db-[0-9a-f]{8}-p-\*(:log-stream:\*)?`),
    reason: "SageMaker's endpoint log groups are named after the endpoint: this stack's endpoints' groups and their streams only.",
  },
  {
    shape: /^<Storage\w+\.Arn>\/sagemaker\/\*\/(request|output|checkpoints)\/\*$/,
    reason: "A SageMaker job's role: one folder (request channel, output or checkpoints) of each training's job prefix.",
  },
  {
    shape: arn('sagemaker', String.raw`training-job/db-[0-9a-f]{8}-\*`),
    reason: "Training jobs are named <stack prefix><training id>: the state machine reaches this stack's jobs only.",
  },
  {
    shape: arn('logs', String.raw`log-group:/aws/sagemaker/TrainingJobs:log-stream:db-[0-9a-f]{8}-\*`),
    reason: "SageMaker's fixed training log group; streams are named after the job, so only this stack's jobs' streams.",
  },
  {
    shape: /^<\w+\.Arn>:\*$/,
    reason: 'Invoking a function also covers its versions and aliases (the qualified ARNs); the function itself is fixed.',
  },
  {
    shape: arn('ecr', String.raw`repository/[a-z0-9._/-]+/\*`),
    reason: 'One ECR repository per model under the configured prefix, created on its first version.',
  },
  {
    shape: arn('states', String.raw`execution:${STATE_MACHINE_NAME}:\*`),
    reason: 'Executions of the training or prediction state machine (one per training or prediction, named by its id); the state machine is fixed.',
  },
  {
    shape: arn('logs', String.raw`log-group:/aws/codebuild/<(Build|WorkflowSageMakerMirror|ServingTemplateVariant)\w+>:\*`),
    reason: "CodeBuild's default grant on its project's own log group streams (the project logs to its own group).",
  },
  {
    shape: arn('codebuild', String.raw`report-group/<(Build|WorkflowSageMakerMirror|ServingTemplateVariant)\w+>-\*`),
    reason: "CodeBuild's default grant on its project's own report groups.",
  },
];

function ack(scope: IConstruct, id: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `AwsSolutions-${id}`, reason });
}

/** The parts of the stack (which passes itself) whose findings are acknowledged here. */
export interface ReviewedStack extends IConstruct {
  readonly secrets: Pick<Secrets, 'apiTokens' | 'webhookSigning' | 'callbackKey'>;
  readonly build: Pick<ModelBuild, 'projects' | 'project' | 'strategy'>;
  readonly workflow: { readonly sagemaker?: Pick<SageMakerTraining, 'mirrorProject'> };
  readonly serving: { readonly templateVariants?: { readonly project: IConstruct } };
  readonly api: Pick<PublicApi, 'restApi' | 'methods' | 'setsAccountLoggingRole'>;
}

export function acknowledgeFindings(stack: ReviewedStack): void {
  for (const secret of [stack.secrets.apiTokens, stack.secrets.webhookSigning, stack.secrets.callbackKey]) {
    ack(
      secret,
      'SMG4',
      'No automatic rotation: token digests are managed by the operator, the webhook signing master derives the ' +
        'keys held by the webhook receivers of every owner, and the callback key signs URLs held by running trainers. Rotate by hand.',
    );
  }
  const mirror = stack.workflow.sagemaker?.mirrorProject;
  const variants = stack.serving.templateVariants?.project;
  const copies = [...(mirror ? [mirror] : []), ...(variants ? [variants] : [])];
  for (const project of [...stack.build.projects, ...copies]) {
    ack(
      project,
      'CB4',
      'The project produces no artifacts (it pushes an image); CodeBuild encrypts its logs with the AWS-managed key.',
    );
  }
  for (const project of [...stack.build.projects, ...copies]) {
    for (const action of ['s3:GetObject*', 's3:GetBucket*', 's3:List*']) {
      ack(
        project,
        `IAM5[Action::${action}]`,
        "CDK's read grant of the project's source: one object of the CDK assets bucket (the bundled build script; for the docker strategy, the serving adapter).",
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
  ack(api, 'APIG3', 'No WAF by default: every route but the trainer-facing ones (self-verifying) and the OpenAPI document needs a token and the stage is throttled. Attach a web ACL per deployment if needed.');
  ack(api, 'COG4', 'Clients authenticate with Replicate-style API tokens through a Lambda TOKEN authorizer, not Cognito.');
  if (stack.api.setsAccountLoggingRole) {
    ack(
      api,
      'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
      "API Gateway's account-level logging role needs the AWS-managed push policy for execution logs.",
    );
  }
  for (const route of ROUTES as readonly Route[]) {
    if (route.auth !== 'token') ack(stack.api.methods[`${route.method} ${route.path}`]!, 'APIG4', NO_TOKEN_REASON[route.auth]);
  }
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
