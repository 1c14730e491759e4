/**
 * The buildspecs against the build environment's contract (lambdas/shared/build-env.ts): each
 * header names exactly the variables its projects and the state machine set, the commands read
 * nothing else, and the append build's program parses its environment with the contract.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { BUILD_EXPORTS, BUILD_OVERRIDE_NAMES, BUILDSPEC_ENV, BuildImageEnv, ProjectEnv } from '#shared/build-env';

const ROOT = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, ROOT), 'utf8');

/** A variable's name: upper case with at least one underscore (no prose word has one). */
const VARIABLE = /\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g;

function buildspec(name: keyof typeof BUILDSPEC_ENV) {
  const text = read(`buildspecs/${name}.yml`);
  const header = text.slice(0, text.search(/^[^#\n]/m));
  const spec = parse(text) as { env: { 'exported-variables': string[] }; phases: Record<string, { commands: string[] }> };
  const commands = Object.values(spec.phases).flatMap((p) => p.commands);
  const script = commands.join('\n');
  return {
    /** What the header says the build is given. */
    declared: new Set(header.match(VARIABLE)),
    exported: spec.env['exported-variables'],
    /** `$NAME` and `${NAME…}` in the commands. */
    read: new Set([...script.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!)),
    /** `NAME=` in the commands: their own shell variables. */
    assigned: new Set([...script.matchAll(/(?:^|[\s;(])([A-Za-z_][A-Za-z0-9_]*)=/gm)].map((m) => m[1]!)),
  };
}

const sorted = (names: Iterable<string>) => [...names].sort();

describe.each(Object.keys(BUILDSPEC_ENV) as (keyof typeof BUILDSPEC_ENV)[])('buildspecs/%s.yml', (name) => {
  const spec = buildspec(name);

  it("names in its header exactly the contract's variables: the state machine's and its projects'", () => {
    expect(sorted(spec.declared)).toEqual(sorted(BUILDSPEC_ENV[name]));
  });

  it('exports what the state machine selects', () => {
    expect(spec.exported).toEqual([...BUILD_EXPORTS]);
  });

  it("reads nothing but the contract's variables, CodeBuild's own and its own shell variables", () => {
    const known = new Set([...BUILDSPEC_ENV[name], ...BUILD_EXPORTS, ...spec.assigned]);
    const unknown = [...spec.read].filter((v) => !known.has(v) && !v.startsWith('CODEBUILD_'));
    expect(unknown).toEqual([]);
  });
});

describe('the builds read the contract', () => {
  it('the docker buildspec reads every override the state machine passes', () => {
    const { read } = buildspec('build-model');
    expect(BUILD_OVERRIDE_NAMES.filter((v) => !read.has(v))).toEqual([]);
  });

  it('the append build parses its environment with the contract, every variable of it', () => {
    const main = read('codebuild/build-image/main.ts');
    expect(main).toContain('BuildImageEnv.parse(process.env)');
    expect(main).toContain('ProjectEnv.parse(process.env)');
    expect(sorted([...Object.keys(BuildImageEnv.shape), ...Object.keys(ProjectEnv.shape)])).toEqual(sorted(BUILDSPEC_ENV['append-model']));
  });
});
