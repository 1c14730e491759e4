/**
 * What each function needs, declared once: its limits, and its needs — each need is one
 * environment variable and the grant that goes with it (as Powertools' `bindTable` or the
 * solutions constructs set both in one call). CDK wires every function from this
 * (infra/constructs/wiring.ts); local mode gives each function exactly these variables, its own
 * (infra/local/functions.ts); so does the handler-test fixture (test/helpers/aws-local.ts).
 */
import type { Config } from '#shared/config';
import { ENV } from '#shared/env';
import { PREFIX } from './constructs/storage.ts';

/** One function per folder under `lambdas/`. */
export const HANDLER_NAMES = [
  'api',
  'authorizer',
  'trainer-callback',
  'trainer-uploads',
  'upload',
  'trainer-queue',
  'start-trainer',
  'check-trainer',
  'stage-weights',
  'prepare-training-job',
  'record',
  'notify',
  'demo-trainer',
] as const;
export type HandlerName = (typeof HANDLER_NAMES)[number];

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
const FUNCTION_ENV: Partial<Record<HandlerName, string>> = {
  notify: ENV.notifyFunction,
  'demo-trainer': ENV.demoTrainerFunction,
};

export type StateMachineAction = 'states:StartExecution' | 'states:DescribeExecution' | 'states:StopExecution';
export type TaskTokenAction = 'states:SendTaskSuccess' | 'states:SendTaskFailure' | 'states:SendTaskHeartbeat';
export type BucketPrefix = (typeof PREFIX)[keyof typeof PREFIX];

export type Need =
  /** TABLE_NAME; item reads and writes on the table and its index (`readItems`: GetItem only). */
  | { kind: 'table'; readItems?: boolean }
  /** BUCKET_NAME; these object actions under one prefix. */
  | { kind: 'objects'; prefix: BucketPrefix; actions: string[] }
  /** BUCKET_NAME only, no rights: to recognise the bucket's own (presigned) URLs. */
  | { kind: 'bucket-name' }
  /** The secret's id variable; GetSecretValue on it. */
  | { kind: 'secret'; secret: ServiceSecret }
  /** No variable (the configuration names them); GetSecretValue on each. */
  | { kind: 'trainer-secrets'; which: TrainerSecrets }
  /** STATE_MACHINE_ARN; these actions on it or its executions. */
  | { kind: 'state-machine'; actions: StateMachineAction[] }
  /** No variable; SendTaskSuccess/Failure/Heartbeat, or only `actions` (task tokens are no resources). */
  | { kind: 'task-tokens'; actions?: TaskTokenAction[] }
  /**
   * No variable (the event names the execution); these actions on the state machine's
   * executions, in a policy of its own: a function the state machine invokes cannot name the
   * state machine in the default policy it depends on (a cycle).
   */
  | { kind: 'execution-status'; actions: 'states:DescribeExecution'[] }
  /** The function's name variable; `invoke` adds lambda:InvokeFunction. Left out when that function is not deployed. */
  | { kind: 'function'; fn: HandlerName; invoke: boolean }
  /** PUBLIC_URL, the API's base URL (callback and training URLs are built on it). */
  | { kind: 'public-url' }
  /** REGISTRY_HOST, where model images are pushed. */
  | { kind: 'registry-host' }
  /** No variable (the build result names the stream); logs:GetLogEvents on the build's log group. */
  | { kind: 'build-logs' }
  /** SAGEMAKER_JOB_PREFIX, SAGEMAKER_IMAGE_HOST and SAGEMAKER_MIRRORS: the stack's job names and its trainer images' mirror. */
  | { kind: 'sagemaker-jobs' }
  /**
   * BUCKET_NAME; s3:GetObject on SageMaker jobs' outputs only (`sagemaker/<id>/output/…`, not
   * their request channels), where a SageMaker-trained training's archive stays staged. Granted
   * only when a sagemaker trainer is configured.
   */
  | { kind: 'job-outputs' };

export interface FunctionDeclaration {
  /** Seconds. @default the configuration's step timeout */
  readonly timeout?: (config: Config) => number;
  /** MB. @default 512 */
  readonly memorySize?: number;
  readonly needs: readonly Need[];
}

const table: Need = { kind: 'table' };
const secret = (s: ServiceSecret): Need => ({ kind: 'secret', secret: s });
const trainerSecrets = (which: TrainerSecrets): Need => ({ kind: 'trainer-secrets', which });
const invokes = (fn: HandlerName): Need => ({ kind: 'function', fn, invoke: true });
const names = (fn: HandlerName): Need => ({ kind: 'function', fn, invoke: false });
const objects = (prefix: BucketPrefix, ...actions: string[]): Need => ({ kind: 'objects', prefix, actions });
const publicUrl: Need = { kind: 'public-url' };
const jobOutputs: Need = { kind: 'job-outputs' };
/** Every function that starts, checks or cancels runs builds a trainer backend. */
const backends: Need[] = [trainerSecrets('backends'), names('demo-trainer')];

/**
 * The functions that receive a trainer's state (callback, start, check) keep a log longer than
 * the record's tail whole in the bucket, overwriting it (lambdas/shared/run-logs.ts).
 */
const writesLogs: Need = objects(PREFIX.logs, 's3:PutObject');

/**
 * The steps that hand a training's input to its trainer sign a fresh GET of an upload then (the
 * URL acts with the signer's role; lambdas/shared/trainers/inputs.ts).
 */
const signsUploads: Need = objects(PREFIX.uploads, 's3:GetObject');

/** A freed trainer slot wakes the next waiter: SendTaskSuccess only. */
const wakesWaiters: Need = { kind: 'task-tokens', actions: ['states:SendTaskSuccess'] };

/** API Gateway gives up after 29 s. */
const API_SECONDS = () => 29;

export const FUNCTIONS: Record<HandlerName, FunctionDeclaration> = {
  api: {
    timeout: API_SECONDS,
    needs: [
      table,
      { kind: 'state-machine', actions: ['states:StartExecution', 'states:DescribeExecution', 'states:StopExecution'] },
      publicUrl,
      // A serving_url given as instance_data is checked with a ranged GET of the URL itself:
      // the bucket's name tells the api's own URLs apart; it needs no S3 rights for that.
      { kind: 'bucket-name' },
      secret('webhookSigning'),
      // A stopped execution runs no Catch: cancel sends the webhook itself.
      invokes('notify'),
      // Cancel forwards to the trainer; a Replicate version's input schema is read with its token
      // (inputs checked at submit). No CodeBuild rights: stopping the execution stops its build.
      ...backends,
      // Cancel frees the training's trainer slot and wakes the next waiter by its token.
      wakesWaiters,
    ],
  },
  authorizer: { timeout: () => 10, needs: [secret('apiTokens')] },
  // The presigned URLs act with this function's role: PUT the upload, GET it to serve it; for
  // output.weights, read one training (owner, status) and GET its staged archive, wherever
  // stage-weights staged it.
  upload: {
    timeout: () => 10,
    needs: [
      objects(PREFIX.uploads, 's3:GetObject', 's3:PutObject'),
      objects(PREFIX.staged, 's3:GetObject'),
      jobOutputs,
      { kind: 'table', readItems: true },
      // A training's whole log, when the record holds only its tail: a presigned GET.
      objects(PREFIX.logs, 's3:GetObject'),
    ],
  },
  'trainer-callback': {
    timeout: API_SECONDS,
    needs: [table, secret('callbackKey'), { kind: 'task-tokens' }, invokes('notify'), publicUrl, ...backends, writesLogs],
  },
  // The Cog upload relay: creates, presigns (parts act with this role) and completes multipart uploads.
  'trainer-uploads': {
    timeout: API_SECONDS,
    needs: [objects(PREFIX.trainerOutputs, 's3:PutObject', 's3:AbortMultipartUpload'), trainerSecrets('uploads')],
  },
  // The trainer queue: its items, waking the next waiter, and the lease check of a slot holder.
  // It also fails (and sends the webhook of) a training whose execution ended outside its steps.
  'trainer-queue': { needs: [table, wakesWaiters, { kind: 'execution-status', actions: ['states:DescribeExecution'] }, invokes('notify')] },
  'start-trainer': {
    needs: [
      table,
      secret('callbackKey'),
      // A run that already ended, or a backend that answers a terminal state at once, is settled here.
      { kind: 'task-tokens' },
      publicUrl,
      invokes('notify'),
      trainerSecrets('backends'),
      invokes('demo-trainer'),
      writesLogs,
      signsUploads,
    ],
  },
  // A fresh wait re-registers the run with a new callback URL, as the start does.
  'check-trainer': { needs: [table, secret('callbackKey'), publicUrl, invokes('notify'), ...backends, writesLogs] },
  'stage-weights': {
    timeout: (config) => config.timeouts.stage_seconds,
    memorySize: 1024,
    needs: [
      table,
      objects(PREFIX.staged, 's3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'),
      objects(PREFIX.trainerOutputs, 's3:GetObject'),
      jobOutputs,
      { kind: 'registry-host' },
      trainerSecrets('downloads'),
    ],
  },
  record: { needs: [table, { kind: 'build-logs' }, invokes('notify')] },
  // Stages a SageMaker job's request channel (input files stream through it) and plans the job.
  'prepare-training-job': {
    timeout: () => 900,
    needs: [
      table,
      objects(PREFIX.sagemaker, 's3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'),
      signsUploads,
      secret('callbackKey'),
      publicUrl,
      invokes('notify'),
      { kind: 'sagemaker-jobs' },
    ],
  },
  // The training object it sends carries URLs built on the public URL.
  notify: { timeout: (config) => config.webhooks.timeout_seconds + 10, needs: [table, secret('webhookSigning'), publicUrl] },
  // One invocation is one run: Lambda's limit bounds a demo training.
  'demo-trainer': { timeout: () => 15 * 60, memorySize: 256, needs: [table, objects(PREFIX.trainerOutputs, 's3:PutObject', 's3:GetObject')] },
};

/** The values of a deployment's variables: CDK tokens on AWS, local names in local mode. */
export interface EnvironmentValues {
  table: string;
  bucket: string;
  stateMachineArn: string;
  publicUrl: string;
  registryHost: string;
  /** The stack's SageMaker job-name prefix and the registry host of its trainer image mirror (ECR). */
  sagemakerJobPrefix: string;
  trainerImageHost: string;
  /** JSON: each sagemaker trainer's mirror repository name, by trainer. */
  sagemakerMirrors: string;
  secretId(secret: ServiceSecret): string;
  /** The function's name, or undefined when it is not deployed. */
  functionName(fn: HandlerName): string | undefined;
}

/** A function's environment variables, from its declaration (secrets and grants aside). */
export function environmentOf(fn: HandlerName, values: EnvironmentValues): Record<string, string> {
  const env: Record<string, string> = {};
  for (const need of FUNCTIONS[fn].needs) {
    switch (need.kind) {
      case 'table':
        env[ENV.table] = values.table;
        break;
      case 'objects':
      case 'bucket-name':
      case 'job-outputs':
        env[ENV.bucket] = values.bucket;
        break;
      case 'secret':
        env[SECRET_ENV[need.secret]] = values.secretId(need.secret);
        break;
      case 'state-machine':
        env[ENV.stateMachineArn] = values.stateMachineArn;
        break;
      case 'function': {
        const name = values.functionName(need.fn);
        const variable = FUNCTION_ENV[need.fn];
        if (!variable) throw new Error(`${fn} names ${need.fn}, which has no environment variable`);
        if (name !== undefined) env[variable] = name;
        break;
      }
      case 'public-url':
        env[ENV.publicUrl] = values.publicUrl;
        break;
      case 'registry-host':
        env[ENV.registryHost] = values.registryHost;
        break;
      case 'sagemaker-jobs':
        env[ENV.jobPrefix] = values.sagemakerJobPrefix;
        env[ENV.trainerImageHost] = values.trainerImageHost;
        env[ENV.trainerMirrors] = values.sagemakerMirrors;
        break;
      case 'trainer-secrets':
      case 'task-tokens':
      case 'execution-status':
      case 'build-logs':
        break;
    }
  }
  return env;
}
