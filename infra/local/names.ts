/**
 * The names of local mode's one deployment, declared once: its account and region, its bucket,
 * table, state machine, build projects, secrets and principals, and the ARNs local IAM and the
 * stand-ins name them by. The template readers (./cloudformation/) resolve the synthesized
 * template's references to these.
 */

export const LOCAL_REGION = 'us-east-1';
export const LOCAL_ACCOUNT = '000000000000';

export const LOCAL_BUCKET = 'dreambooth-local';
export const LOCAL_TABLE = 'dreambooth-trainings';
export const LOCAL_STATE_MACHINE_ARN = `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:dreambooth-training`;
export const LOCAL_PREDICTION_STATE_MACHINE_ARN = `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:dreambooth-prediction`;
/**
 * Where local mode runs a state machine of the template, by its construct path: the training
 * one and the prediction one at the ARNs above, any other at a name derived from its path.
 */
export function localStateMachineArn(path: string | undefined, logicalId: string): string {
  if (path === 'Workflow/StateMachine') return LOCAL_STATE_MACHINE_ARN;
  if (path === 'Serving/StateMachine') return LOCAL_PREDICTION_STATE_MACHINE_ARN;
  const name = (path ?? logicalId).replace(/[^A-Za-z0-9_-]+/g, '-').toLowerCase();
  return `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:dreambooth-${name}`;
}
/** The build project's name in the resolved definition. */
export const LOCAL_BUILD_PROJECT = 'build-model';
/** The trainer image mirror's project name in the resolved definition. */
export const LOCAL_MIRROR_PROJECT = 'mirror-image';
/** The REST API's stage, as a TOKEN authorizer's `methodArn` names it. */
export const LOCAL_REST_API_ARN = `arn:aws:execute-api:${LOCAL_REGION}:${LOCAL_ACCOUNT}:local/prod`;

/** The stack's own secrets (by their name in infra/functions.ts) under the ids local mode keeps them. */
export const LOCAL_SECRET_IDS = {
  apiTokens: 'local/api-tokens',
  webhookSigning: 'local/webhook-signing',
  callbackKey: 'local/callback-key',
} as const;
/** The suffix AWS appends to a secret's name in its ARN; local mode's secrets all carry this one. */
export const LOCAL_SECRET_SUFFIX = '-000000';

/** Principals that are not functions: the state machine's role and the build project's. */
export const STATE_MACHINE_PRINCIPAL = 'state-machine';
export const BUILD_PRINCIPAL = 'build';
/** The principal of a state machine's role: the training machine's is `state-machine`. */
export function stateMachinePrincipal(stateMachineArn: string): string {
  return stateMachineArn === LOCAL_STATE_MACHINE_ARN ? STATE_MACHINE_PRINCIPAL : `state-machine-${stateMachineArn.split(':').pop()}`;
}
/** The SageMaker job role: the local stand-in lays out and uploads a job's files as it. */
export const SAGEMAKER_JOB_PRINCIPAL = 'sagemaker-job';
/** The message of a refused call in service.log (test/helpers/local-mode.ts fails a run that has one). */
export const LOCAL_IAM_DENIED = 'local IAM denied a call';

/** Where a running local mode says it listens, in its data directory (./address.ts). */
export const LOCAL_ADDRESS_FILE = 'local-mode.json';

export function lambdaArn(handler: string): string {
  return `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${handler}`;
}

export function codeBuildProjectArn(project: string): string {
  return `arn:aws:codebuild:${LOCAL_REGION}:${LOCAL_ACCOUNT}:project/${project}`;
}

/** A trainer mirror's ECR repository, as local IAM and the local DescribeImages name it. */
export function ecrRepositoryArn(name: string): string {
  return `arn:aws:ecr:${LOCAL_REGION}:${LOCAL_ACCOUNT}:repository/${name}`;
}

/**
 * The local name of an ECR repository CloudFormation names on AWS (a trainer's mirror): one
 * name for the definition, the functions' environment and local IAM.
 */
export function localRepositoryName(logicalId: string): string {
  return `mirror/${logicalId.toLowerCase()}`;
}

export function trainingJobArn(name: string): string {
  return `arn:aws:sagemaker:${LOCAL_REGION}:${LOCAL_ACCOUNT}:training-job/${name}`;
}

/** A role the template declares, by its logical id (a SageMaker job's, passed by the state machine). */
export function roleArn(logicalId: string): string {
  return `arn:aws:iam::${LOCAL_ACCOUNT}:role/${logicalId}`;
}

/** An SNS topic of the template, by its logical id. */
export function topicArn(logicalId: string): string {
  return `arn:aws:sns:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${logicalId}`;
}

/** A SageMaker hosting resource (`model`, `endpoint-config`, `endpoint`); SageMaker's ARNs hold the name in lower case. */
export function sagemakerArn(type: 'model' | 'endpoint-config' | 'endpoint', name: string): string {
  return `arn:aws:sagemaker:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${type}/${name.toLowerCase()}`;
}
