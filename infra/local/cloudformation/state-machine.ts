/**
 * The state machine definition as plain ASL, for local mode: the very definition CDK deploys,
 * read from the synthesized template (./synthesize.ts) with every CloudFormation reference
 * resolved to a local name (../names.ts).
 *
 * Synchronous. Local mode runs `asl` with aws-local-stepfunctions and overrides each Task state
 * by name, using `taskHandlers`, what each Task state calls:
 * - `{ kind: 'lambda', handler, integration: 'direct' }`: the state's effective input (its
 *   Parameters) is the Lambda event and the handler's return value is the task's result.
 * - `{ kind: 'lambda', handler, integration: 'waitForTaskToken' }`: the state's input is what
 *   Step Functions gives `lambda:invoke`, `{ FunctionName, Payload }`; the event is `Payload`
 *   (see `lambdaEvent` in ../lambda/task.ts), it carries the task token, and the task's result is what
 *   SendTaskSuccess sends.
 * - `{ kind: <a service integration> }`: a state that calls another service (CodeBuild,
 *   SageMaker, ECR), told apart by the table of integrations (../stepfunctions/integrations.ts),
 *   whose stand-in answers as the service would.
 */
import { ENV } from '#shared/env';
import type { HandlerName } from '../../constructs/function.ts';
import {
  LOCAL_ACCOUNT,
  LOCAL_BUCKET,
  LOCAL_BUILD_PROJECT,
  LOCAL_MIRROR_PROJECT,
  LOCAL_REGION,
  LOCAL_STATE_MACHINE_ARN,
  lambdaArn,
  localRepositoryName,
  localStateMachineArn,
  roleArn,
  topicArn,
} from '../names.ts';
import { integrationOf, type TaskTarget } from '../stepfunctions/integrations.ts';
import type { SynthesizedTemplate } from './template.ts';

export interface SynthesizedDefinition {
  /** The ASL document (JSONPath, no CloudFormation references left). */
  asl: { StartAt: string; States: Record<string, AslState> } & Record<string, unknown>;
  /** Every state name, in definition order. */
  stateNames: string[];
  /** What each Task state runs, by state name. */
  taskHandlers: Record<string, TaskTarget>;
  /** The stack's SageMaker job-name prefix, when a sagemaker trainer is configured. */
  sagemakerJobPrefix?: string;
  /** The prepare step's SAGEMAKER_MIRRORS (each trainer's mirror repository), resolved to local names. */
  sagemakerMirrors?: string;
  /**
   * The functions EventBridge rules invoke with the state machine's "Execution Status Change"
   * events, and the statuses each rule matches: local mode sends them the same events.
   */
  executionStatusTargets: { handler: HandlerName; statuses: string[] }[];
}

export interface AslState {
  Type: string;
  Resource?: string;
  Parameters?: Record<string, unknown>;
  [field: string]: unknown;
}

const PSEUDO: Record<string, string> = {
  'AWS::Partition': 'aws',
  'AWS::Region': LOCAL_REGION,
  'AWS::AccountId': LOCAL_ACCOUNT,
  'AWS::URLSuffix': 'amazonaws.com',
};

/** One state machine of the template: where the stack declares it, the ARN local mode runs it at, and its definition. */
export interface LocalStateMachine {
  logicalId: string;
  /** Its construct path below the stack (`Workflow/StateMachine`), when the template says. */
  path: string | undefined;
  arn: string;
  definition: SynthesizedDefinition;
}

type Template = Pick<SynthesizedTemplate, 'template' | 'functions'> & { machinePaths?: SynthesizedTemplate['machinePaths'] };

/** The training state machine (`Workflow/StateMachine`, or the template's only one), its references resolved to local values. */
export function definitionOf(synth: Template): SynthesizedDefinition {
  const machines = stateMachinesOf(synth);
  const training = machines.find((m) => m.arn === LOCAL_STATE_MACHINE_ARN) ?? (machines.length === 1 ? machines[0] : undefined);
  if (!training) throw new Error(`the template has ${machines.length} state machines and none at Workflow/StateMachine`);
  return training.definition;
}

/** Every state machine of the template, each at its local ARN (../names.ts). */
export function stateMachinesOf(synth: Template): LocalStateMachine[] {
  const { template } = synth;
  const ids = Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine').map(([id]) => id);
  const paths = pathsOf(synth);
  const arns = new Map(ids.map((id) => [id, ids.length === 1 && !paths.get(id) ? LOCAL_STATE_MACHINE_ARN : localStateMachineArn(paths.get(id), id)]));
  const values = referenceValues(synth, arns);
  return ids.map((id) => ({ logicalId: id, path: paths.get(id), arn: arns.get(id)!, definition: machineDefinition(synth, id, values) }));
}

/** The values local mode gives the template's references. */
export function referenceValues(synth: Template, machines: Map<string, string>): Map<string, string> {
  const values = new Map<string, string>(synth.functions.map((fn) => [fn.logicalId, lambdaArn(fn.name)]));
  for (const [id, arn] of machines) values.set(id, arn);
  for (const [id, r] of Object.entries(synth.template.Resources)) {
    if (r.Type === 'AWS::CodeBuild::Project') values.set(id, JSON.stringify(r.Properties?.Source).includes('mirror-image.mjs') ? LOCAL_MIRROR_PROJECT : LOCAL_BUILD_PROJECT);
    // Roles a task passes on (a SageMaker job's).
    if (r.Type === 'AWS::IAM::Role') values.set(id, roleArn(id));
    // The definition names a mirror by reference (RepositoryName), never by ARN.
    if (r.Type === 'AWS::ECR::Repository') values.set(id, localRepositoryName(id));
    if (r.Type === 'AWS::SNS::Topic') values.set(id, topicArn(id));
    // The data bucket (local mode has no other).
    if (r.Type === 'AWS::S3::Bucket' && id.startsWith('StorageData')) values.set(id, LOCAL_BUCKET);
  }
  return values;
}

/** Construct paths below the stack, by logical id: the template's path metadata, and the construct tree's where synthesis gave them. */
function pathsOf(synth: Template): Map<string, string> {
  const out = new Map<string, string>();
  for (const [id, r] of Object.entries(synth.template.Resources)) {
    const path = (r as { Metadata?: Record<string, unknown> }).Metadata?.['aws:cdk:path'];
    if (typeof path === 'string') out.set(id, path.split('/').slice(1, -1).join('/'));
  }
  for (const [id, path] of Object.entries(synth.machinePaths ?? {})) out.set(id, path);
  return out;
}

function machineDefinition(synth: Template, logicalId: string, values: Map<string, string>): SynthesizedDefinition {
  const { template } = synth;
  const definition = resolveReferences(template.Resources[logicalId]!.Properties!.DefinitionString, values);
  if (typeof definition !== 'string') throw new Error('the state machine definition did not resolve to a string');
  const asl = JSON.parse(definition) as SynthesizedDefinition['asl'];

  const handlersByArn = new Map(synth.functions.map((fn) => [lambdaArn(fn.name), fn.name]));
  const taskHandlers: Record<string, TaskTarget> = {};
  for (const [name, state] of Object.entries(asl.States)) {
    if (state.Type === 'Task') taskHandlers[name] = taskTarget(name, state, handlersByArn);
  }
  const prepare = synth.functions.find((fn) => fn.name === 'prepare-training-job');
  const variables = prepare && template.Resources[prepare.logicalId]!.Properties?.Environment?.Variables;
  const sagemakerJobPrefix = variables?.[ENV.jobPrefix];
  const sagemakerMirrors = variables?.[ENV.trainerMirrors] === undefined ? undefined : String(resolveReferences(variables[ENV.trainerMirrors], values));
  const executionStatusTargets = executionStatusTargetsOf(synth, logicalId);
  return { asl, stateNames: Object.keys(asl.States), taskHandlers, sagemakerJobPrefix, sagemakerMirrors, executionStatusTargets };
}

/** The rules on one state machine's "Execution Status Change" events (a rule naming no machine matches all), and the functions they invoke. */
function executionStatusTargetsOf(synth: Template, machine: string): SynthesizedDefinition['executionStatusTargets'] {
  const byLogicalId = new Map(synth.functions.map((fn) => [fn.logicalId, fn.name]));
  const out: SynthesizedDefinition['executionStatusTargets'] = [];
  for (const rule of Object.values(synth.template.Resources).filter((r) => r.Type === 'AWS::Events::Rule')) {
    const pattern = rule.Properties?.EventPattern as
      | { source?: string[]; 'detail-type'?: string[]; detail?: { status?: string[]; stateMachineArn?: { Ref?: string }[] } }
      | undefined;
    if (!pattern?.source?.includes('aws.states') || !pattern['detail-type']?.includes('Step Functions Execution Status Change')) continue;
    const named = pattern.detail?.stateMachineArn;
    if (named && !named.some((m) => m?.Ref === machine)) continue;
    for (const target of (rule.Properties?.Targets ?? []) as { Arn: { 'Fn::GetAtt'?: [string, string] } }[]) {
      const handler = byLogicalId.get(target.Arn['Fn::GetAtt']?.[0] ?? '');
      if (handler) out.push({ handler, statuses: pattern.detail?.status ?? [] });
    }
  }
  return out;
}

/** A template value with its references (Ref, Fn::GetAtt Arn, Fn::Join) resolved to local values. */
export function resolveReferences(value: unknown, values: Map<string, string>): unknown {
  if (typeof value === 'string' || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => resolveReferences(v, values));
  const node = value as Record<string, unknown>;
  if ('Fn::Join' in node) {
    const [separator, parts] = node['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => resolveReferences(p, values)).join(separator);
  }
  if ('Ref' in node) return lookup(String(node.Ref), PSEUDO[String(node.Ref)], values);
  if ('Fn::GetAtt' in node) {
    const [id, attribute] = node['Fn::GetAtt'] as [string, string];
    if (attribute !== 'Arn') throw new Error(`cannot resolve ${id}.${attribute} locally`);
    return lookup(id, undefined, values);
  }
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, resolveReferences(v, values)]));
}

function lookup(id: string, pseudo: string | undefined, values: Map<string, string>): string {
  const value = pseudo ?? values.get(id);
  if (value === undefined) throw new Error(`cannot resolve a reference to ${id} locally`);
  return value;
}

function taskTarget(name: string, state: AslState, handlers: Map<string, HandlerName>): TaskTarget {
  const service = integrationOf(state);
  if (service) return { kind: service.kind };
  const resource = state.Resource ?? '';
  const integration = resource === 'arn:aws:states:::lambda:invoke.waitForTaskToken' ? 'waitForTaskToken' : 'direct';
  const arn = integration === 'direct' ? resource : String(state.Parameters?.FunctionName ?? '');
  const handler = handlers.get(arn);
  if (!handler) throw new Error(`Task state "${name}" runs ${resource}, which local mode cannot run`);
  return { kind: 'lambda', handler, integration };
}
