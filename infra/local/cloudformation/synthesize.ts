/**
 * The deployment as local mode sees it: the CloudFormation template CDK synthesizes (in-process,
 * no bundling, no network). Its readers beside this file take from it what local mode runs: the
 * state machine (./state-machine.ts), the REST API (./rest-api.ts), the table (./table.ts) and
 * each role's policies (./policies.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type CfnElement, CfnResource as CdkCfnResource } from 'aws-cdk-lib';
import type { Config } from '#shared/config';
import { HouseFunction } from '../../constructs/function.ts';
import { DreamboothStack } from '../../stack.ts';
import { definitionOf, type SynthesizedDefinition } from './state-machine.ts';
import type { CfnTemplate, SynthesizedTemplate } from './template.ts';

export type { CfnResource, CfnTemplate, SynthesizedFunction, SynthesizedTemplate } from './template.ts';

export interface Synthesized extends SynthesizedTemplate {
  /** The stack object, for what only the construct tree knows (e.g. the function declarations). */
  stack: DreamboothStack;
}

/**
 * Synthesizes the stack as `cdk synth` does, into a temporary directory removed afterwards.
 * `validate`: with CDK's built-in CloudFormation validation, as `cdk synth` runs it.
 */
export function synthesize(config: Config, { validate = false }: { validate?: boolean } = {}): Synthesized {
  const outdir = mkdtempSync(join(tmpdir(), 'dreambooth-synth-'));
  try {
    // An empty bundling-stacks list makes the functions skip esbuild entirely. CDK's built-in
    // CloudFormation validation (a WebAssembly engine) takes 9 of 11 s of a synthesis and 300 MB:
    // local mode runs it when it synthesizes (its stack is then kept, ./stack-cache.ts, so a
    // second start skips it), tests leave it to cfn-lint, which checks every template they make.
    const app = new App({ outdir, context: { 'aws:cdk:bundling-stacks': [] }, builtinCloudFormationValidation: validate });
    const stack = new DreamboothStack(app, 'Dreambooth', { config });
    const template = app.synth().getStackByName(stack.stackName).template as CfnTemplate;
    const functions = HouseFunction.all(stack).map((fn) => ({
      name: fn.handlerName,
      logicalId: stack.getLogicalId(fn.node.defaultChild as CfnElement),
      roleLogicalId: stack.getLogicalId(fn.role!.node.defaultChild as CfnElement),
    }));
    return { template, functions, machinePaths: machinePathsOf(stack), stack };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** The training state machine's definition, synthesized with `config`. */
export function synthesizeDefinition(config: Config): SynthesizedDefinition {
  return definitionOf(synthesize(config));
}

function machinePathsOf(stack: DreamboothStack): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of stack.node.findAll()) {
    if (!(c instanceof CdkCfnResource) || c.cfnResourceType !== 'AWS::StepFunctions::StateMachine') continue;
    out[stack.resolve(stack.getLogicalId(c)) as string] = c.node.path.split('/').slice(1, -1).join('/');
  }
  return out;
}
