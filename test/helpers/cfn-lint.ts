/**
 * cfn-lint, AWS's CloudFormation linter, over the templates the tests synthesize: the CLI synths
 * (test/infra/deploy-synth.test.ts) and every in-process synth of an infra test
 * (test/helpers/cfn-lint-setup.ts). The repository's .cfnlintrc applies (the rules it ignores,
 * each with its reason), as it does to `cfn-lint cdk.out/Dreambooth.template.json` by hand.
 * Whether cfn-lint is here at all is decided with the other capabilities (requireCfnLint).
 *
 * Its default export is the run's global setup (vitest.config.ts): a directory where test files
 * claim the templates they lint, so a template several files synthesize is linted once a run.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import type { TestProject } from 'vitest/node';
import { ROOT } from './paths.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    cfnLintClaims: string;
  }
}

export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'cfn-lint-claims-'));
  project.provide('cfnLintClaims', dir);
  return () => rmSync(dir, { recursive: true, force: true });
}

/** True for the first file of the run to claim this template (for `region`): that file lints it. */
export function claimTemplate(body: string, region: string): boolean {
  const dir = inject('cfnLintClaims');
  if (!dir) return true;
  try {
    closeSync(openSync(join(dir, `${region || 'default'}-${templateHash(body)}`), 'wx'));
    return true;
  } catch {
    return false;
  }
}

export const CFN_LINT_CONFIG = join(ROOT, '.cfnlintrc');

export interface CfnLintFinding {
  level: 'Error' | 'Warning' | 'Informational';
  rule: string;
  message: string;
  /** Where: the template file, and the path inside it (`Resources/<id>/Properties/...`). */
  file: string;
  path: string;
}

interface CfnLintMatch {
  Level: CfnLintFinding['level'];
  Rule: { Id: string };
  Message: string;
  Filename: string;
  Location: { Path?: (string | number)[] };
}

/** Lints template files against `region` (cfn-lint's default, us-east-1, when not given). */
export function cfnLint(templates: string[], region?: string): Promise<CfnLintFinding[]> {
  const args = ['--config-file', CFN_LINT_CONFIG, '--format', 'json', ...(region ? ['--regions', region] : []), '--', ...templates];
  return new Promise((resolve, reject) => {
    execFile('cfn-lint', args, { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      // A finding sets a bit of the exit code; only output that is not the JSON report is a failure to lint.
      let matches: CfnLintMatch[];
      try {
        matches = JSON.parse(stdout) as CfnLintMatch[];
      } catch {
        reject(new Error(`cfn-lint did not lint ${templates.join(', ')} (${error?.message ?? 'no report'}): ${stderr}`));
        return;
      }
      resolve(
        matches.map((m) => ({
          level: m.Level,
          rule: m.Rule.Id,
          message: m.Message,
          file: m.Filename,
          path: (m.Location.Path ?? []).join('/'),
        })),
      );
    });
  });
}

/** Templates as objects (an in-process synth): written to a temporary directory, each distinct one once, and linted. */
export async function cfnLintTemplates(templates: unknown[], region?: string): Promise<CfnLintFinding[]> {
  const dir = await mkdtemp(join(tmpdir(), 'cfn-lint-'));
  try {
    const files = new Map<string, string>();
    for (const template of templates) {
      const body = JSON.stringify(template, null, 1);
      const file = join(dir, `${templateHash(body)}.template.json`);
      if (!files.has(file)) files.set(file, body);
    }
    await Promise.all([...files].map(([file, body]) => writeFile(file, body)));
    return await cfnLint([...files.keys()], region);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const templateHash = (body: string): string => createHash('sha256').update(body).digest('hex').slice(0, 16);

/** What a test expects to be empty: errors and warnings, one line each. */
export const problems = (findings: CfnLintFinding[]): string[] =>
  findings.filter((f) => f.level !== 'Informational').map((f) => `${f.level} ${f.rule} ${f.path}: ${f.message} (${f.file})`);
