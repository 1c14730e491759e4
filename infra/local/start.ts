/**
 * Local mode: the whole service on one machine, no AWS account. The state machine and the REST
 * API are the ones CDK synthesizes (read by ./cloudformation/, run by ./stepfunctions/, served by
 * ./apigateway.ts); every Task and route runs the same handler module as on AWS, each function
 * in its own environment as its own principal (./lambda/); the handlers reach the stand-ins of
 * S3, DynamoDB, Step Functions, Secrets Manager and Lambda (./aws.ts) through the SDK's
 * AWS_ENDPOINT_URL_* variables. docs/local-mode.md maps each AWS service to its file.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Config } from '#shared/config';
import { setLogSink } from '#shared/log';
import type { HandlerName } from '../constructs/function.ts';
import type { EnvironmentValues } from '../functions.ts';
import { portFor, rememberPort, writeLocalAddress } from './address.ts';
import { startLocalAws, type LocalAws } from './aws.ts';
import { localClient, localServices, operatorStore } from './clients.ts';
import { restApiOf } from './cloudformation/rest-api.ts';
import { servingValuesOf } from './cloudformation/serving.ts';
import { stateMachinesOf, type LocalStateMachine, type SynthesizedDefinition } from './cloudformation/state-machine.ts';
import { snsSubscriptionsOf } from './cloudformation/subscriptions.ts';
import { localStack, type LocalStack } from './cloudformation/stack-cache.ts';
import { tableOf } from './cloudformation/table.ts';
import { warmUp } from './codebuild/append.ts';
import type { BuildStrategy } from './codebuild/build-model.ts';
import { localConfiguration, type LocalConfiguration } from './configuration.ts';
import { listenApiGateway } from './apigateway.ts';
import { stateMachineOf, statusChangeDelivery } from './eventbridge.ts';
import { startLocalExpiry } from './expiry.ts';
import { settleLastStop } from './interrupted.ts';
import { followMovedServers } from './moved-servers.ts';
import { withDropped } from './iam/dropped.ts';
import { localEnvironment, localPrincipals, type LocalPrincipal } from './lambda/environment.ts';
import { startLocalFunctions, type LocalFunctions } from './lambda/functions.ts';
import type { InvokeFunction } from './lambda/invoke.ts';
import { LOCAL_IAM_DENIED, LOCAL_PREDICTION_STATE_MACHINE_ARN, LOCAL_SECRET_IDS, LOCAL_STATE_MACHINE_ARN, stateMachinePrincipal } from './names.ts';
import { ensureTokens, loadLocalSecrets, localSecretValues, SECRETS_FILE, type LocalSecrets } from './secretsmanager/local-secrets.ts';
import { taskHandlersOf } from './stepfunctions/integrations.ts';
import type { LocalServices, StandInContext } from './stepfunctions/stand-in.ts';
import { Terminal } from './terminal.ts';

export interface LocalModeOptions {
  port: number;
  dataDir: string;
  token?: string;
  /** JSON in the `dreambooth` schema merged over cdk.json's. */
  configOverride?: unknown;
  /** `HOST:PORT` of a registry to use instead of starting one. */
  registry?: string;
  /** `none` forces the OCI layout even when a registry could be started. */
  registryMode?: 'auto' | 'none';
  build?: BuildStrategy | 'auto';
  quiet?: boolean;
  /** More Secrets Manager secrets (id → SecretString) the configuration names, e.g. a Replicate token. */
  secrets?: Record<string, string>;
  /** Seconds a stopped SageMaker job's container gets between SIGTERM and SIGKILL. @default 120 */
  stopGraceSeconds?: number;
}

export interface LocalMode {
  url: string;
  token: string;
  tokenGenerated: boolean;
  config: Config;
  buildStrategy: BuildStrategy;
  image: { registry: string | null; layoutDir: string | null };
  aws: LocalAws;
  /** Each function's principal: its credentials and its role in the synthesized template. */
  functions: LocalPrincipal[];
  terminal: Terminal;
  /** The executions the last stop left running, resumed at start, by kind; and those that could not resume. */
  resumed: { trainings: number; predictions: number; failed: number };
  stop(): Promise<void>;
}

/** What the steps share: the options, the data directory, the terminal, and what to stop. */
interface Start {
  opts: LocalModeOptions;
  dataDir: string;
  terminal: Terminal;
  /** What a step started and must stop, newest last. */
  stops: (() => Promise<void>)[];
}

/** Everything the stack is made of, as local mode reads it. */
interface Deployment {
  local: LocalConfiguration;
  synth: LocalStack; // the last start's when nothing it is made of changed
  /** The training state machine's definition. */
  definition: SynthesizedDefinition;
  /** Every state machine of the template, the training one among them. */
  machines: LocalStateMachine[];
  principals: LocalPrincipal[];
  secrets: LocalSecrets;
}

/**
 * Starts local mode. Nothing here changes process-wide state but the service log's sink: the
 * functions get their own environments, local mode's own clients their endpoints explicitly.
 */
export async function startLocalMode(opts: LocalModeOptions): Promise<LocalMode> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const terminal = new Terminal(join(dataDir, 'service.log'), opts.quiet ?? false);
  setLogSink((line) => terminal.serviceLog(line));
  const s: Start = { opts, dataDir, terminal, stops: [] };
  const stop = async () => {
    for (const step of s.stops.reverse()) await step().catch(() => undefined);
    s.stops.length = 0;
    terminal.close();
  };
  try {
    return { ...(await start(s)), terminal, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * The steps: the API's listener (the demo trainers need its URL), the configuration, the
 * synthesized stack, the AWS services, the functions, the API served, what the last stop left.
 * The services and the functions call each other (Lambda Invoke and the Task states run
 * functions; a function's environment names the services' endpoints): the services start with a
 * promise of the functions, kept once both run.
 */
async function start(s: Start): Promise<Omit<LocalMode, 'terminal' | 'stop'>> {
  const { opts, dataDir, terminal } = s;
  // A --port as given; else the last run's when free (trainers hold callback URLs from before a restart).
  const gateway = await listenApiGateway(opts.port || { last: portFor(dataDir, 0) });
  rememberPort(dataDir, gateway.port);
  s.stops.push(() => gateway.stop());
  const deployment = await synthesizeLocally(s, gateway.url);
  const { local, secrets } = deployment;
  let servicesRun: (services: LocalServices) => void = () => undefined;
  const services = new Promise<LocalServices>((resolve) => (servicesRun = resolve));
  const invoke: InvokeFunction = async (fn, event) => (await services).invoke(fn, event);
  const aws = await startServices(s, deployment, services, invoke);
  s.stops.push(() => aws.stop());
  await publishEndpoints(aws, dataDir, secrets, opts.secrets);
  const functions = startFunctions(s, deployment, aws, gateway.url);
  s.stops.push(() => functions.stop());
  const started = localServices(aws, functions);
  servicesRun(started);
  const storage = { s3: started.s3As('trainer-uploads'), reader: started.s3As('stage-weights'), bucket: aws.bucket };
  gateway.serve({ api: restApiOf(deployment.synth), invoke, storage });
  terminal.attachStore(operatorStore(aws));
  s.stops.push(startLocalExpiry(aws, deployment.synth.template, (line) => terminal.note(line)));
  // Once the functions can run (else a resumed step's timeout counts the bundling), what the last stop left running goes on.
  await functions.ready();
  await followMovedServers(aws, local.moved, (line) => terminal.note(line));
  const resumed = aws.executions.resume();
  await settleLastStop(aws, deployment.machines, new Set(deployment.synth.functions.map((f) => f.name)), invoke, (line) => terminal.note(line));
  // Written last: a client that finds the file finds a server that answers.
  const token = secrets.generated ? 'secrets.json' : 'DREAMBOOTH_API_TOKEN';
  const forget = writeLocalAddress(dataDir, { url: gateway.url, pid: process.pid, token });
  s.stops.push(async () => forget());
  // The first to stop: no new requests, then every execution held where it is (kept on disk).
  s.stops.push(() => aws.executions.suspend());
  s.stops.push(() => gateway.stop());
  warmUp(local.buildStrategy === 'append', (line) => terminal.note(line));
  return {
    resumed: {
      trainings: resumed.resumed.filter((e) => e.stateMachineArn === LOCAL_STATE_MACHINE_ARN).length,
      predictions: resumed.resumed.filter((e) => e.stateMachineArn === LOCAL_PREDICTION_STATE_MACHINE_ARN).length,
      failed: resumed.interrupted.length,
    },
    url: gateway.url,
    token: secrets.token,
    tokenGenerated: secrets.generated,
    config: local.config,
    buildStrategy: local.buildStrategy,
    image: { registry: local.images.registryHost, layoutDir: local.images.layoutDir },
    aws,
    functions: deployment.principals,
  };
}

/** The configuration completed, the stack synthesized with it, and each function's principal. */
async function synthesizeLocally(s: Start, publicUrl: string): Promise<Deployment> {
  const { opts, dataDir, terminal } = s;
  const secrets = loadLocalSecrets(dataDir, opts.token);
  const local = await localConfiguration({
    ...opts,
    dataDir,
    publicUrl,
    onStop: (stop) => s.stops.push(stop),
    note: (line) => terminal.note(line),
    trainerLog: (line) => terminal.trainer(line),
  });
  const { stack: synth } = await localStack(local.config, dataDir);
  const machines = stateMachinesOf(synth);
  const training = machines.find((m) => m.arn === LOCAL_STATE_MACHINE_ARN);
  if (!training) throw new Error('the template has no state machine at Workflow/StateMachine');
  return { local, synth, definition: training.definition, machines, principals: localPrincipals(dataDir, synth.functions), secrets };
}

/** The local AWS services, the state machine's Task states run by the integrations' stand-ins. */
function startServices(s: Start, d: Deployment, services: Promise<LocalServices>, invoke: InvokeFunction): Promise<LocalAws> {
  const { opts, dataDir, terminal } = s;
  const standIns: StandInContext = {
    services,
    config: d.local.config,
    buildStrategy: d.local.buildStrategy,
    registryHost: d.local.images.registryHost,
    dataDir,
    stopGraceSeconds: opts.stopGraceSeconds,
    log: { build: (line) => terminal.build(line), trainer: (line) => terminal.trainer(line) },
  };
  const note = (line: string) => terminal.note(line);
  const deliveries = new Map(d.machines.map((m) => [m.arn, statusChangeDelivery(m.definition.executionStatusTargets, invoke, note)]));
  // Each machine's Task states run as its own role.
  const handlersOf = (m: LocalStateMachine) => taskHandlersOf(m.definition.taskHandlers, { ...standIns, principal: stateMachinePrincipal(m.arn) });
  return startLocalAws({
    dataDir,
    table: tableOf(d.synth.template),
    definition: d.definition.asl,
    taskHandlers: taskHandlersOf(d.definition.taskHandlers, standIns),
    machines: d.machines
      .filter((m) => m.arn !== LOCAL_STATE_MACHINE_ARN)
      .map((m) => ({ stateMachineArn: m.arn, definition: m.definition.asl, taskHandlers: handlersOf(m) })),
    subscriptions: snsSubscriptionsOf(d.synth),
    secrets: localSecretValues(d.secrets, opts.secrets),
    secretsFile: join(dataDir, SECRETS_FILE),
    lambdas: Object.fromEntries(d.synth.functions.map((f) => [f.name, (payload: unknown) => invoke(f.name, payload)])),
    onExecutionEvent: (e) => {
      terminal.execution(e);
      if (e.status !== 'RUNNING' && e.status !== 'INTERRUPTED') void deliveries.get(stateMachineOf(e.executionArn))?.(e.executionArn, e.name, e.status);
    },
    accessKeys: d.principals,
    // Every call is signed by its principal and allowed by its role's policies in the template.
    iam: withDropped(d.synth.policies),
    log: (line) => terminal.note(line),
    // Printed, and kept in service.log: a refused call is a missing grant to fix in infra/.
    onDenial: (denial) => {
      terminal.note(
        `local IAM: ${denial.principal} may not ${denial.action} on ${denial.resource} (the deployed role would be refused too)`,
      );
      terminal.serviceLog(
        JSON.stringify({ level: 'WARN', message: LOCAL_IAM_DENIED, service: 'local-iam', ...denial, timestamp: new Date().toISOString() }),
      );
    },
  });
}

/**
 * The endpoints, for the AWS CLI or SDK against local mode (e.g. StopExecution of a training by
 * hand) with local mode's own key (s3rver's fixed test pair); and the API tokens list, brought
 * up to date.
 */
async function publishEndpoints(
  aws: LocalAws,
  dataDir: string,
  secrets: LocalSecrets,
  extra: Record<string, string> | undefined,
): Promise<void> {
  const endpoints = { ...aws.env, STATE_MACHINE_ARN: aws.stateMachineArn };
  writeFileSync(join(dataDir, 'aws-endpoints.json'), `${JSON.stringify(endpoints, null, 1)}\n`, { mode: 0o600 });
  const client = localClient(aws.env, SecretsManagerClient, aws.env.AWS_ENDPOINT_URL_SECRETS_MANAGER);
  try {
    await ensureTokens(client, dataDir, secrets, extra);
  } finally {
    client.destroy();
  }
}

/** The functions, each with the environment its declaration gives it and its own credentials. */
function startFunctions(s: Start, d: Deployment, aws: LocalAws, publicUrl: string): LocalFunctions {
  const registryHost = d.local.images.registryHost ?? '';
  const deployed = new Set(d.synth.functions.map((f) => f.name));
  const values: EnvironmentValues = {
    table: aws.table,
    bucket: aws.bucket,
    stateMachineArn: aws.stateMachineArn,
    predictionStateMachineArn: LOCAL_PREDICTION_STATE_MACHINE_ARN,
    publicUrl,
    registryHost,
    sagemakerJobPrefix: d.definition.sagemakerJobPrefix ?? '',
    sagemakerMirrors: d.definition.sagemakerMirrors ?? '{}',
    serving: servingValuesOf(d.synth),
    // Local mode's registry stands for ECR: the mirror step copies trainer images into it.
    trainerImageHost: registryHost,
    secretId: (secret) => LOCAL_SECRET_IDS[secret],
    functionName: (fn) => (deployed.has(fn) ? fn : undefined),
  };
  const principals = new Map(d.principals.map((p) => [p.fn, p]));
  const principal = (fn: HandlerName) => {
    const p = principals.get(fn);
    if (!p) throw new Error(`no principal for function ${fn}`);
    return p;
  };
  return startLocalFunctions({
    config: d.local.config,
    names: d.synth.functions.map((f) => f.name),
    bundleDir: join(s.dataDir, 'functions'),
    environment: (fn) => localEnvironment(fn, { config: d.local.config, values, awsEnv: aws.env, principal: principal(fn) }),
    log: (line) => s.terminal.serviceLog(line),
  });
}
