/**
 * The configurations the documents show are the ones that deploy: every ```json block marked
 * `<!-- config-example: <name> -->` in README.md or docs/*.md is read from the document, merged
 * over cdk.json's `dreambooth` as `-c config=FILE` merges it, parsed, synthesized and checked
 * with cdk-nag (cfn-lint lints the templates too: test/helpers/cfn-lint-setup.ts). A block that
 * looks like a configuration but carries no mark fails, so no example escapes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { ConfigSchema, mergeConfig, parseConfig } from '#shared/config';
import { DreamboothStack } from '#infra/stack';
import { ROOT } from '#test-helpers/paths';

const cdkJson = JSON.parse(readFileSync(join(ROOT, 'cdk.json'), 'utf8'));

/** What the documents must show, each at least once. */
const REQUIRED = ['sagemaker', 'cog', 'replicate', 'oci-registry', 'spot', 'warm-pool', 'alarm-topic'];

interface JsonBlock {
  document: string;
  line: number;
  /** The name of its `config-example` mark, if it has one. */
  example?: string;
  text: string;
}

/** The fenced ```json blocks of a Markdown document (indented ones in list items too). */
function jsonBlocks(document: string): JsonBlock[] {
  const lines = readFileSync(join(ROOT, document), 'utf8').split('\n');
  const blocks: JsonBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i]!.match(/^(\s*)```(\w*)\s*$/);
    if (!open) continue;
    const [, indent, lang] = open as unknown as [string, string, string];
    let end = i + 1;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end]!)) end++;
    if (lang === 'json') {
      const before = lines.slice(0, i).reverse().find((l) => l.trim() !== '') ?? '';
      const example = before.match(/<!-- config-example: ([\w-]+) -->/)?.[1];
      const text = lines.slice(i + 1, end).map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l)).join('\n');
      blocks.push({ document, line: i + 1, example, text });
    }
    i = end;
  }
  return blocks;
}

const docs = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
const blocks = ['README.md', ...docs].flatMap(jsonBlocks);
const examples = blocks.filter((b) => b.example);
const CONFIG_KEYS = new Set(Object.keys(ConfigSchema.shape));

function synth(example: JsonBlock) {
  const where = `${example.document}:${example.line} (config-example ${example.example})`;
  const config = parseConfig(mergeConfig(cdkJson.context.dreambooth, JSON.parse(example.text)), `cdk.json context "dreambooth" merged with ${where}`);
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  new DreamboothStack(app, 'Dreambooth', { config });
  app.synth();
  return { app, config };
}

describe('the configuration examples of the documents', () => {
  it('show every documented configuration, and mark every block that is a configuration', () => {
    expect(REQUIRED.filter((name) => !examples.some((e) => e.example === name))).toEqual([]);
    const unmarked = blocks.filter((b) => {
      if (b.example) return false;
      let value: unknown;
      try {
        value = JSON.parse(b.text);
      } catch {
        return false;
      }
      return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).every((k) => CONFIG_KEYS.has(k));
    });
    expect(unmarked.map((b) => `${b.document}:${b.line}`)).toEqual([]);
  });

  for (const example of examples) {
    it(`synthesizes ${example.example} (${example.document}:${example.line}) merged over cdk.json, cdk-nag clean`, () => {
      const { app, config } = synth(example);
      // The example took effect: each key it sets is in the configuration the stack was built from.
      for (const [key, value] of Object.entries(JSON.parse(example.text) as Record<string, object>)) {
        expect((config as Record<string, unknown>)[key]).toMatchObject(value);
      }
      expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)).toEqual([]);
    });
  }
});
