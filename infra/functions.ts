/**
 * What each function needs, declared once: its limits, and its needs — each need is one kind
 * of infra/needs.ts, which sets its environment variables and makes its grant. CDK wires every
 * function from this (infra/constructs/wiring.ts); local mode gives each function exactly these
 * variables, its own (infra/local/lambda/environment.ts); so does the handler-test fixture
 * (test/helpers/aws-local.ts).
 */
import type { Config } from '#shared/config';
import { PREFIX } from './constructs/storage.ts';
import type { HandlerName } from './handler-names.ts';
import { type BucketPrefix, type EnvironmentValues, type NamedFunction, type Need, type ServiceSecret, type TrainerSecrets, variablesOf } from './needs.ts';

export { HANDLER_NAMES, type HandlerName } from './handler-names.ts';
export type { EnvironmentValues, Need, ServiceSecret, TrainerSecrets } from './needs.ts';

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
const invokes = (fn: NamedFunction): Need => ({ kind: 'function', fn, invoke: true });
const names = (fn: NamedFunction): Need => ({ kind: 'function', fn, invoke: false });
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
      // Predictions: start, cancel (stop) and describe their executions; write the request object
      // the endpoint reads; sign GETs of file outputs (the URLs act with this role).
      { kind: 'prediction-state-machine', actions: ['states:StartExecution', 'states:DescribeExecution', 'states:StopExecution'] },
      objects(PREFIX.predictions, 's3:GetObject', 's3:PutObject'),
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
      // A weights version's weights, copied content-addressed (and read back by a re-template).
      objects(PREFIX.weights, 's3:GetObject', 's3:PutObject'),
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
  // The prediction's endpoint: made, scaled and (daily, idle) deleted; the endpoint's last use in
  // the table. Reads the prediction and its version.
  'prediction-endpoint': { needs: [table, { kind: 'sagemaker-endpoints' }] },
  // Marks the prediction processing with its task token, then queues the request (the endpoint
  // reads the request object with its own role); sends the `start` webhook through notify. For a
  // weights version it rewrites the request with a presigned GET of the weights, signed with this
  // role (the endpoint role reads no weights).
  predict: {
    needs: [table, { kind: 'endpoint-invoke' }, objects(PREFIX.predictions, 's3:GetObject', 's3:PutObject'), objects(PREFIX.weights, 's3:GetObject'), invokes('notify')],
  },
  // Finds the prediction of SageMaker's notification and ends its wait.
  'prediction-notified': { needs: [{ kind: 'table', readItems: true }, { kind: 'task-tokens', actions: ['states:SendTaskSuccess', 'states:SendTaskFailure'] }] },
  // Reads the endpoint's response (and a failure's body), writes the file outputs.
  'record-prediction': { memorySize: 1024, needs: [table, objects(PREFIX.predictions, 's3:GetObject', 's3:PutObject')] },
  // The training object it sends carries URLs built on the public URL.
  // A prediction's webhook carries its file outputs as presigned GETs, signed with this role.
  notify: { timeout: (config) => config.webhooks.timeout_seconds + 10, needs: [table, secret('webhookSigning'), publicUrl, objects(PREFIX.predictions, 's3:GetObject')] },
  // One invocation is one run: Lambda's limit bounds a demo training.
  'demo-trainer': { timeout: () => 15 * 60, memorySize: 256, needs: [table, objects(PREFIX.trainerOutputs, 's3:PutObject', 's3:GetObject')] },
};

/** A function's environment variables, from its declaration (secrets and grants aside). */
export function environmentOf(fn: HandlerName, values: EnvironmentValues): Record<string, string> {
  return Object.assign({}, ...FUNCTIONS[fn].needs.map((need) => variablesOf(need, values)));
}
