/**
 * The kinds of need a function declares (infra/functions.ts), each one object: its environment
 * variables and its grant, in one place, as Powertools' `bindTable` or the solutions constructs
 * set both in one call. CDK applies both (infra/constructs/wiring.ts); local mode and the
 * handler-test fixture set the variables (environmentOf) and read the grants back from the
 * synthesized template. A kind missing its object, or a need of no kind, does not compile.
 */
import { Stack } from 'aws-cdk-lib';
import { Grant, type IGrantable, Policy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { ILogGroup } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { ENV } from '#shared/env';
import type { PREFIX, Storage } from './constructs/storage.ts';
import type { HandlerName } from './handler-names.ts';

/** The service's own secrets, by the name the Secrets construct gives them. */
export type ServiceSecret = 'apiTokens' | 'webhookSigning' | 'callbackKey';
const SECRET_ENV: Record<ServiceSecret, string> = {
  apiTokens: ENV.apiTokensSecret,
  webhookSigning: ENV.webhookSecret,
  callbackKey: ENV.callbackKeySecret,
};

/**
 * Secrets the configuration names: `backends` are what building a trainer backend reads (Cog
 * webhook tokens, Replicate API tokens), `downloads` what downloading a trainer's output reads
 * (Replicate API tokens), `uploads` the Cog upload relay's tokens.
 */
export type TrainerSecrets = 'backends' | 'downloads' | 'uploads';

/** Functions that others name (and may invoke), with the variable that names them. */
const FUNCTION_ENV = { notify: ENV.notifyFunction, 'demo-trainer': ENV.demoTrainerFunction } as const;
export type NamedFunction = keyof typeof FUNCTION_ENV;

export type StateMachineAction = 'states:StartExecution' | 'states:DescribeExecution' | 'states:StopExecution';
export type TaskTokenAction = 'states:SendTaskSuccess' | 'states:SendTaskFailure' | 'states:SendTaskHeartbeat';
export type BucketPrefix = (typeof PREFIX)[keyof typeof PREFIX];

/** The values of a deployment's variables: CDK tokens on AWS, local names in local mode. */
export interface EnvironmentValues {
  table: string;
  bucket: string;
  stateMachineArn: string;
  predictionStateMachineArn: string;
  publicUrl: string;
  registryHost: string;
  /** The stack's SageMaker job-name prefix and the registry host of its trainer image mirror (ECR). */
  sagemakerJobPrefix: string;
  trainerImageHost: string;
  /** JSON: each sagemaker trainer's mirror repository name, by trainer. */
  sagemakerMirrors: string;
  /** The Serving construct's names (infra/constructs/serving.ts); absent where no function needs them. */
  serving?: ServingValues;
  secretId(secret: ServiceSecret): string;
  /** The function's name, or undefined when it is not deployed. */
  functionName(fn: HandlerName): string | undefined;
}

/** What the prediction endpoints are made with: their name prefix, role, topics and response path. */
export interface ServingValues {
  endpointPrefix: string;
  endpointRoleArn: string;
  successTopicArn: string;
  errorTopicArn: string;
  /** `s3://<bucket>/predictions/`. */
  outputPath: string;
  /** The template variant project's name and the templates' ECR repositories (`<host>/<prefix>/templates`), when the registry is ECR. */
  variantBuild?: { project: string; repositoryPrefix: string };
}

/** The Serving construct's part in the grants. */
export interface ServingGrantables {
  /** Creating, describing, scaling and deleting this stack's endpoints (infra/constructs/serving-iam.ts). */
  grantEndpoints(grantee: IGrantable): void;
  /** InvokeEndpointAsync on this stack's endpoints. */
  grantInvoke(grantee: IGrantable): void;
}

/** What the grants act on: the deployment's resources (CDK constructs). */
export interface Grantables {
  readonly storage: Pick<Storage, 'grantItemRead' | 'grantTableReadWrite' | 'grantObjects'>;
  readonly secrets: Readonly<Record<ServiceSecret, ISecret>> & { readonly trainerSecrets: Readonly<Record<TrainerSecrets, readonly ISecret[]>> };
  readonly stateMachine: StateMachine;
  readonly predictionStateMachine: StateMachine;
  readonly serving: ServingGrantables;
  readonly buildLogs: ILogGroup;
  /** Present when a sagemaker trainer is configured. */
  readonly sagemaker?: { grantReadOutputs(grantee: IGrantable): void };
  readonly functions: ReadonlyMap<HandlerName, IFunction>;
}

/** A kind of need whose declarations carry `P`: the variables it sets and the grant it makes. */
interface NeedKind<P> {
  variables?(need: P, values: EnvironmentValues): Record<string, string>;
  grant?(fn: IFunction, need: P, on: Grantables): void;
}
const kind = <P = object>(k: NeedKind<P>): NeedKind<P> => k;

export const NEED_KINDS = {
  /** TABLE_NAME; item reads and writes on the table and its index (`readItems`: GetItem only). */
  table: kind<{ readItems?: boolean }>({
    variables: (_, v) => ({ [ENV.table]: v.table }),
    grant: (fn, need, on) => (need.readItems ? on.storage.grantItemRead(fn) : on.storage.grantTableReadWrite(fn)),
  }),
  /** BUCKET_NAME; these object actions under one prefix. */
  objects: kind<{ prefix: BucketPrefix; actions: string[] }>({
    variables: (_, v) => ({ [ENV.bucket]: v.bucket }),
    grant: (fn, need, on) => on.storage.grantObjects(fn, need.prefix, need.actions),
  }),
  /** BUCKET_NAME only, no rights: to recognise the bucket's own (presigned) URLs. */
  'bucket-name': kind({ variables: (_, v) => ({ [ENV.bucket]: v.bucket }) }),
  /** The secret's id variable; GetSecretValue on it. */
  secret: kind<{ secret: ServiceSecret }>({
    variables: (need, v) => ({ [SECRET_ENV[need.secret]]: v.secretId(need.secret) }),
    grant: (fn, need, on) => on.secrets[need.secret].grantRead(fn),
  }),
  /** No variable (the configuration names them); GetSecretValue on each. */
  'trainer-secrets': kind<{ which: TrainerSecrets }>({
    grant: (fn, need, on) => {
      for (const secret of on.secrets.trainerSecrets[need.which]) secret.grantRead(fn);
    },
  }),
  /** STATE_MACHINE_ARN; these actions on it or its executions. */
  'state-machine': kind<{ actions: StateMachineAction[] }>({
    variables: (_, v) => ({ [ENV.stateMachineArn]: v.stateMachineArn }),
    grant: (fn, need, on) => {
      const execution = need.actions.filter((a) => a !== 'states:StartExecution');
      if (need.actions.includes('states:StartExecution')) on.stateMachine.grantStartExecution(fn);
      if (execution.length) on.stateMachine.grantExecution(fn, ...execution);
    },
  }),
  /** PREDICTION_STATE_MACHINE_ARN; these actions on it or its executions. */
  'prediction-state-machine': kind<{ actions: StateMachineAction[] }>({
    variables: (_, v) => ({ [ENV.predictionStateMachineArn]: v.predictionStateMachineArn }),
    grant: (fn, need, on) => {
      const execution = need.actions.filter((a) => a !== 'states:StartExecution');
      const machine = on.predictionStateMachine;
      if (need.actions.includes('states:StartExecution')) machine.grantStartExecution(fn);
      if (execution.length) machine.grantExecution(fn, ...execution);
    },
  }),
  /** No variable; SendTaskSuccess/Failure/Heartbeat, or only `actions`. */
  'task-tokens': kind<{ actions?: TaskTokenAction[] }>({
    // Task tokens are not resources: SendTask* takes no resource-level permission.
    grant: (fn, need) => {
      const actions = need.actions ?? ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'];
      Grant.addToPrincipal({ grantee: fn, actions, resourceArns: ['*'] });
    },
  }),
  /**
   * No variable (the event names the execution); these actions on the state machine's
   * executions, in a policy of its own: a function the state machine invokes cannot name the
   * state machine in the default policy it depends on (a cycle).
   */
  'execution-status': kind<{ actions: 'states:DescribeExecution'[] }>({
    grant: (fn, need, on) => {
      const { partition, region, account } = Stack.of(fn);
      const executions = `arn:${partition}:states:${region}:${account}:execution:${on.stateMachine.stateMachineName}:*`;
      new Policy(fn, 'ExecutionStatus', { roles: [fn.role!], statements: [new PolicyStatement({ actions: need.actions, resources: [executions] })] });
    },
  }),
  /** The function's name variable; `invoke` adds lambda:InvokeFunction. Left out when that function is not deployed. */
  function: kind<{ fn: NamedFunction; invoke: boolean }>({
    variables: (need, v) => {
      const name = v.functionName(need.fn);
      return name === undefined ? {} : { [FUNCTION_ENV[need.fn]]: name };
    },
    grant: (fn, need, on) => {
      if (need.invoke) on.functions.get(need.fn)?.grantInvoke(fn);
    },
  }),
  /** PUBLIC_URL, the API's base URL (callback and training URLs are built on it). */
  'public-url': kind({ variables: (_, v) => ({ [ENV.publicUrl]: v.publicUrl }) }),
  /** REGISTRY_HOST, where model images are pushed. */
  'registry-host': kind({ variables: (_, v) => ({ [ENV.registryHost]: v.registryHost }) }),
  /** No variable (the build result names the stream); logs:GetLogEvents on the build's log group. */
  'build-logs': kind({ grant: (fn, _, on) => on.buildLogs.grant(fn, 'logs:GetLogEvents') }),
  /** SAGEMAKER_JOB_PREFIX, SAGEMAKER_IMAGE_HOST and SAGEMAKER_MIRRORS: the stack's job names and its trainer images' mirror. */
  'sagemaker-jobs': kind({
    variables: (_, v) => ({ [ENV.jobPrefix]: v.sagemakerJobPrefix, [ENV.trainerImageHost]: v.trainerImageHost, [ENV.trainerMirrors]: v.sagemakerMirrors }),
  }),
  /**
   * SAGEMAKER_ENDPOINT_PREFIX, SAGEMAKER_ENDPOINT_ROLE_ARN, the two topics' ARNs and
   * PREDICTION_OUTPUT_PATH; making, scaling and deleting this stack's endpoints only.
   */
  'sagemaker-endpoints': kind({
    variables: (_, v) => (v.serving ? servingVariables(v.serving) : {}),
    grant: (fn, _, on) => on.serving.grantEndpoints(fn),
  }),
  /** No variable (the step names the endpoint); InvokeEndpointAsync on this stack's endpoints. */
  'endpoint-invoke': kind({ grant: (fn, _, on) => on.serving.grantInvoke(fn) }),
  /**
   * BUCKET_NAME; s3:GetObject on SageMaker jobs' outputs only (`sagemaker/<id>/output/…`, not
   * their request channels), where a SageMaker-trained training's archive stays staged. Granted
   * only when a sagemaker trainer is configured.
   */
  'job-outputs': kind({
    variables: (_, v) => ({ [ENV.bucket]: v.bucket }),
    grant: (fn, _, on) => on.sagemaker?.grantReadOutputs(fn),
  }),
};

function servingVariables(s: ServingValues): Record<string, string> {
  return {
    [ENV.endpointPrefix]: s.endpointPrefix,
    [ENV.endpointRole]: s.endpointRoleArn,
    [ENV.predictionSuccessTopic]: s.successTopicArn,
    [ENV.predictionErrorTopic]: s.errorTopicArn,
    [ENV.predictionOutputPath]: s.outputPath,
    ...(s.variantBuild ? { [ENV.templateVariantProject]: s.variantBuild.project, [ENV.templateRepositoryPrefix]: s.variantBuild.repositoryPrefix } : {}),
  };
}

type Kinds = typeof NEED_KINDS;
/** A function's need: a kind with what its declaration carries. */
export type Need = { [K in keyof Kinds]: { kind: K } & (Kinds[K] extends NeedKind<infer P> ? P : never) }[keyof Kinds];

const kindOf = <N extends Need>(need: N) => NEED_KINDS[need.kind] as NeedKind<N>;

/** The variables one need sets. */
export const variablesOf = (need: Need, values: EnvironmentValues): Record<string, string> => kindOf(need).variables?.(need, values) ?? {};

/** The grant one need makes to `fn` on AWS. */
export const grantNeed = (fn: IFunction, need: Need, on: Grantables): void => kindOf(need).grant?.(fn, need, on);
