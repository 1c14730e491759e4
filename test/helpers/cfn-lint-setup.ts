/**
 * cfn-lint over every template an infra test synthesizes in-process. Template.fromStack,
 * app.synth() and infra/local/cloudformation/synthesize.ts's synthesize all end in Stage.synth, which this wraps for the
 * test files under test/infra/; after a file's tests, each distinct template it synthesized is
 * linted against its stack's region (cfn-lint's default, us-east-1, for a stack without one),
 * and any error or warning fails the file. So no configuration a test synthesizes escapes it. A
 * template another file of the run has already claimed is that file's to lint.
 */
import { relative } from 'node:path';
import type { StageSynthesisOptions } from 'aws-cdk-lib';
import { afterAll, expect } from 'vitest';
import { ROOT } from './paths.ts';

const file = relative(ROOT, expect.getState().testPath ?? '');

// Other files load nothing here: most never touch CDK.
if (/^test[\\/]infra[\\/]/.test(file)) await lintWhatThisFileSynthesizes();

async function lintWhatThisFileSynthesizes(): Promise<void> {
  const { Stage } = await import('aws-cdk-lib');
  const { requireCfnLint } = await import('./capabilities.ts');
  const { claimTemplate, cfnLintTemplates, problems } = await import('./cfn-lint.ts');
  // Region ('' for none) → template text → template.
  const synthesized = new Map<string, Map<string, unknown>>();
  const synth = Stage.prototype.synth;
  Stage.prototype.synth = function (this: InstanceType<typeof Stage>, options?: StageSynthesisOptions) {
    const assembly = synth.call(this, options);
    for (const stack of assembly.stacks) {
      const region = stack.environment.region === 'unknown-region' ? '' : stack.environment.region;
      const templates = synthesized.get(region) ?? new Map<string, unknown>();
      templates.set(JSON.stringify(stack.template), stack.template);
      synthesized.set(region, templates);
    }
    return assembly;
  };
  afterAll(async () => {
    if (synthesized.size === 0) return;
    const lint = requireCfnLint(`linting the templates ${file} synthesizes with cfn-lint`);
    if (lint.skip) return;
    const claimed = [...synthesized]
      .map(([region, templates]) => [region, [...templates].filter(([body]) => claimTemplate(body, region)).map(([, t]) => t)] as const)
      .filter(([, templates]) => templates.length > 0);
    const findings = await Promise.all(claimed.map(([region, templates]) => cfnLintTemplates(templates, region || undefined)));
    expect(problems(findings.flat()), `cfn-lint of the templates ${file} synthesizes`).toEqual([]);
  }, 600_000);
}
