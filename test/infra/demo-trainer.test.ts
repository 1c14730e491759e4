/** The demo trainer is deployed with the stack when a `demo` trainer has no url. */
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig } from '#shared/config';
import { DreamboothStack } from '#infra/stack';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();

function synth(trainers: unknown) {
  const config = parseConfig({ ...(cdkJson.context.dreambooth as object), trainers });
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new DreamboothStack(app, 'Dreambooth', { config });
  return { stack, template: Template.fromStack(stack).toJSON() as { Resources: Record<string, any> } };
}

const functions = (t: { Resources: Record<string, any> }) =>
  Object.values(t.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');

describe('the demo trainer in the stack', () => {
  it('is a 15-minute Lambda that start-trainer may invoke, and whose name the drivers know', () => {
    const { stack, template } = synth(mergeConfig({}, { demo: { backend: 'demo' } }));
    const demo = functions(template).find((f) => f.Properties.Timeout === 900 && f.Properties.MemorySize === 256);
    expect(demo).toBeDefined();
    const startTrainer = stack.getLogicalId(stack.workflow.functions.startTrainer.node.defaultChild as never);
    const env = template.Resources[startTrainer].Properties.Environment.Variables;
    expect(env.DEMO_TRAINER_FUNCTION).toBeDefined();
    const invokes = Object.values(template.Resources).filter(
      (r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties).includes('lambda:InvokeFunction') && JSON.stringify(r.Properties.Roles).includes('StartTrainer'),
    );
    expect(invokes.length).toBeGreaterThan(0);
    // Async retries would start a second run: off.
    const asyncConfig = Object.values(template.Resources).find((r) => r.Type === 'AWS::Lambda::EventInvokeConfig');
    expect(asyncConfig?.Properties.MaximumRetryAttempts).toBe(0);
  });

  it('is left out when every trainer is a real one', () => {
    const { template } = synth({ mine: { backend: 'cog', url: 'https://cog.example.com' } });
    // Every house function but the demo trainer: 11 for trainings, 4 for predictions.
    expect(functions(template)).toHaveLength(15);
    expect(JSON.stringify(template)).not.toContain('DEMO_TRAINER_FUNCTION');
  });
});
