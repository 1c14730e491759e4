/**
 * bin/app.ts as the CDK CLI runs it: context from CDK_CONTEXT_JSON, output to CDK_OUTDIR.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const cdkJson = JSON.parse(readFileSync(join(ROOT, 'cdk.json'), 'utf8'));
const SECTIONS = { limits: {}, egress: {}, retention: {}, webhooks: {}, timeouts: {} };

function synth(dreambooth: unknown, outdir: string) {
  const context = { 'aws:cdk:bundling-stacks': [], dreambooth };
  return new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'bin/app.ts'],
      { cwd: ROOT, env: { ...process.env, CDK_CONTEXT_JSON: JSON.stringify(context), CDK_OUTDIR: outdir } },
      (error, _stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stderr }),
    );
  });
}

describe('bin/app.ts', () => {
  const dirs: string[] = [];
  const outdir = () => {
    const d = mkdtempSync(join(tmpdir(), 'cdk-out-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('synthesizes the stack from the repository configuration', async () => {
    const out = outdir();
    const { code, stderr } = await synth({ ...cdkJson.context.dreambooth, ...SECTIONS }, out);
    expect(stderr).not.toMatch(/AwsSolutions-/);
    expect(code).toBe(0);
    expect(existsSync(join(out, 'Dreambooth.template.json'))).toBe(true);
  });

  it('fails synth on an invalid configuration, naming the key', async () => {
    const out = outdir();
    const invalid = {
      ...cdkJson.context.dreambooth,
      ...SECTIONS,
      templates: { ...cdkJson.context.dreambooth.templates, default: 'no-such-template' },
    };
    const { code, stderr } = await synth(invalid, out);
    expect(code).not.toBe(0);
    expect(stderr).toContain('dreambooth.templates.default');
    expect(existsSync(join(out, 'Dreambooth.template.json'))).toBe(false);
  });
});
