/**
 * The state machine definition as plain ASL, for local mode: the very definition CDK deploys,
 * synthesized in-process (no bundling, no network, no Docker; about two seconds) with every
 * CloudFormation reference resolved to a fixed local value.
 *
 * Synchronous. Local mode runs `asl` with aws-local-stepfunctions and overrides each Task state
 * by name, using `taskHandlers`:
 * - `{ kind: 'lambda', handler, integration: 'direct' }`: the state's effective input (its
 *   Parameters) is the Lambda event and the handler's return value is the task's result.
 * - `{ kind: 'lambda', handler, integration: 'waitForTaskToken' }`: the state's input is what
 *   Step Functions gives `lambda:invoke`, `{ FunctionName, Payload }`; the event is `Payload`
 *   (see `lambdaEvent`), it carries the task token, and the task's result is what
 *   SendTaskSuccess sends.
 * - `{ kind: 'codebuild' }`: the input is StartBuild's request (`ProjectName`,
 *   `EnvironmentVariablesOverride: [{ Name, Type, Value }]`); resolve with
 *   `{ Build: { Id, ExportedEnvironmentVariables: [{ Name, Value }] } }` and throw when the
 *   build fails, as `startBuild.sync` does.
 */
import { App, Stack } from 'aws-cdk-lib';
import { CfnProject } from 'aws-cdk-lib/aws-codebuild';
import { CfnFunction } from 'aws-cdk-lib/aws-lambda';
import { CfnStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import type { Config } from '#shared/config';
import { HouseFunction, type HandlerName } from './constructs/function.ts';
import { DreamboothStack } from './stack.ts';

export const LOCAL_REGION = 'us-east-1';
export const LOCAL_ACCOUNT = '000000000000';
/** The build project's name in the resolved definition. */
export const LOCAL_BUILD_PROJECT = 'build-model';

export type TaskTarget =
  | { kind: 'lambda'; handler: HandlerName; integration: 'direct' | 'waitForTaskToken' }
  | { kind: 'codebuild' };

export interface SynthesizedDefinition {
  /** The ASL document (JSONPath, no CloudFormation references left). */
  asl: { StartAt: string; States: Record<string, AslState> } & Record<string, unknown>;
  /** Every state name, in definition order. */
  stateNames: string[];
  /** What each Task state runs, by state name. */
  taskHandlers: Record<string, TaskTarget>;
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

export function lambdaArn(handler: HandlerName): string {
  return `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${handler}`;
}

/** The Lambda event of a Task's effective input (see the module comment). */
export function lambdaEvent(target: TaskTarget, input: unknown): unknown {
  if (target.kind === 'lambda' && target.integration === 'waitForTaskToken') {
    return (input as { Payload?: unknown } | null)?.Payload;
  }
  return input;
}

export function synthesizeDefinition(config: Config): SynthesizedDefinition {
  // An empty bundling-stacks list makes NodejsFunction skip esbuild entirely.
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new DreamboothStack(app, 'Dreambooth', { config });
  const values = localValues(stack);

  const machine = stack.workflow.stateMachine.node.defaultChild as CfnStateMachine;
  const definition = resolveReferences(stack.resolve(machine.definitionString), values);
  if (typeof definition !== 'string') throw new Error('the state machine definition did not resolve to a string');
  const asl = JSON.parse(definition) as SynthesizedDefinition['asl'];

  const handlersByArn = new Map(HouseFunction.all(stack).map((fn) => [lambdaArn(fn.handlerName), fn.handlerName]));
  const taskHandlers: Record<string, TaskTarget> = {};
  for (const [name, state] of Object.entries(asl.States)) {
    if (state.Type === 'Task') taskHandlers[name] = taskTarget(name, state, handlersByArn);
  }
  return { asl, stateNames: Object.keys(asl.States), taskHandlers };
}

/** Local values of `Ref` and `Fn::GetAtt` by logical id. */
function localValues(stack: Stack): Map<string, string> {
  const values = new Map<string, string>();
  for (const fn of HouseFunction.all(stack)) {
    values.set(stack.getLogicalId(fn.node.defaultChild as CfnFunction), lambdaArn(fn.handlerName));
  }
  for (const project of stack.node.findAll().filter((c): c is CfnProject => c instanceof CfnProject)) {
    values.set(stack.getLogicalId(project), LOCAL_BUILD_PROJECT);
  }
  return values;
}

function resolveReferences(value: unknown, values: Map<string, string>): unknown {
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
  const resource = state.Resource ?? '';
  if (resource.startsWith('arn:aws:states:::codebuild:startBuild')) return { kind: 'codebuild' };
  const integration = resource === 'arn:aws:states:::lambda:invoke.waitForTaskToken' ? 'waitForTaskToken' : 'direct';
  const arn = integration === 'direct' ? resource : String(state.Parameters?.FunctionName ?? '');
  const handler = handlers.get(arn);
  if (!handler) throw new Error(`Task state "${name}" runs ${resource}, which local mode cannot run`);
  return { kind: 'lambda', handler, integration };
}
