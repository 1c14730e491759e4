/**
 * The synthesized stack as plain data, what local mode reads (./synthesize.ts makes it; the
 * readers beside this file take it apart): no CDK is loaded to read it.
 */
import type { HandlerName } from '../../handler-names.ts';

export interface CfnResource {
  Type: string;
  // biome-ignore lint/suspicious/noExplicitAny: a synthesized resource's properties, as CloudFormation has them
  Properties?: Record<string, any>;
}
export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
}

/** One house function of the template. */
export interface SynthesizedFunction {
  name: HandlerName;
  /** Logical ids of the function and of its execution role (its policies name the role). */
  logicalId: string;
  roleLogicalId: string;
}

/** The template and what the construct tree says of it. */
export interface SynthesizedTemplate {
  template: CfnTemplate;
  functions: SynthesizedFunction[];
  /** Each state machine's construct path below the stack (`Workflow/StateMachine`), by logical id. */
  machinePaths: Record<string, string>;
}
