/**
 * bin/app.ts as the CDK CLI runs it: context from CDK_CONTEXT_JSON, output to CDK_OUTDIR. The
 * CLI itself, for the shipped configuration and in several regions: deploy-synth.test.ts.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from '#test-helpers/paths';

const cdkJson = JSON.parse(readFileSync(join(ROOT, 'cdk.json'), 'utf8'));
const SECTIONS = { limits: {}, egress: {}, retention: {}, webhooks: {}, timeouts: {} };

function synth(dreambooth: unknown, outdir: string, extra: Record<string, unknown> = {}) {
  const context = { 'aws:cdk:bundling-stacks': [], dreambooth, ...extra };
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
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
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

  it('fails synth when the default template has no pinned digest, saying how to pin one', async () => {
    const out = outdir();
    const templates = cdkJson.context.dreambooth.templates;
    const { code, stderr } = await synth({ ...cdkJson.context.dreambooth, ...SECTIONS, templates: { ...templates, default: 'vanilla-template' } }, out);
    expect(templates.catalog['vanilla-template'].digests).toBeUndefined();
    expect(code).not.toBe(0);
    expect(stderr).toContain('dreambooth.templates.default: template vanilla-template has no pinned digest');
    expect(stderr).toContain('dreambooth.templates.catalog.vanilla-template.digests');
    expect(existsSync(join(out, 'Dreambooth.template.json'))).toBe(false);
  });

  it('merges -c config=FILE over the dreambooth context, as local mode merges --config', async () => {
    const out = outdir();
    const file = join(out, 'override.json');
    writeFileSync(file, JSON.stringify({ timeouts: { build_minutes: 77 } }));
    const { code, stderr } = await synth({ ...cdkJson.context.dreambooth, ...SECTIONS }, out, { config: file });
    expect(stderr).not.toMatch(/AwsSolutions-/);
    expect(code).toBe(0);
    const template = JSON.parse(readFileSync(join(out, 'Dreambooth.template.json'), 'utf8'));
    // The model build's project (the mirrors of trainer and template images keep their own timeouts).
    const projects = Object.entries(template.Resources as Record<string, { Type: string; Properties: { TimeoutInMinutes?: number } }>)
      .filter(([id, r]) => r.Type === 'AWS::CodeBuild::Project' && r.Properties.TimeoutInMinutes !== undefined && !/Mirror|TemplateVariant/.test(id))
      .map(([, r]) => r);
    expect(projects.map((p) => p.Properties.TimeoutInMinutes)).toEqual([77]);
    // The base's trainers survive the merge: only the named key changed.
    expect(Object.keys(template.Resources).some((id) => id.startsWith('DemoTrainer'))).toBe(true);
  });

  it('names the file when the merged configuration is invalid', async () => {
    const out = outdir();
    const file = join(out, 'bad.json');
    writeFileSync(file, JSON.stringify({ trainers: { gpu: { backend: 'sagemaker', image: 'r8.im/replicate/dreambooth:latest' } } }));
    const { code, stderr } = await synth({ ...cdkJson.context.dreambooth, ...SECTIONS }, out, { config: file });
    expect(code).not.toBe(0);
    expect(stderr).toContain('dreambooth.trainers.gpu.image: must be <registry>/<repository>@sha256:<64 hex>');
    expect(stderr).toContain(file);
  });
});
