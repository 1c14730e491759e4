/**
 * Sizes a reader can hold: no source file over 300 lines, no function over 60. A file past
 * that does several jobs (split it by concern, each part named for its job); a function past
 * that is several steps (name them). Every source file git knows (tracked, or new and not
 * ignored) counts, except tests and generated files; functions are counted in the TypeScript
 * and JavaScript ones, from the line they start on to their closing brace.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from '#test-helpers/paths';

const MAX_FILE_LINES = 300;
const MAX_FUNCTION_LINES = 60;
const SOURCE = /\.(ts|mts|cts|mjs|cjs|js|py)$/;
const SCRIPT = /\.(ts|mts|cts|mjs|cjs|js)$/;

/** Files that must stay one file however long, each with the reason. */
const ONE_FILE: Record<string, string> = {
  'runner/dreambooth_runner.py':
    "shipped as one file: baked into the prepare step's bundle as one string, written as one object into the job's request channel, run as the container's entrypoint",
};

function sourceFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  return out
    .split('\n')
    .filter((file) => SOURCE.test(file) && !file.startsWith('test/'))
    .filter((file) => !/@generated/.test(readFileSync(join(ROOT, file), 'utf8').split('\n', 5).join('\n')));
}

const lineCount = (text: string) => text.split('\n').length - (text.endsWith('\n') ? 1 : 0);

/** A function's own name, else the name it is given (`const f = () => …`, `f: () => …`), else `constructor` or `(anonymous)`. */
function nameOf(node: ts.SignatureDeclaration, source: ts.SourceFile): string {
  if (node.name) return node.name.getText(source);
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if ((ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) && parent.name) {
    return parent.name.getText(source);
  }
  return '(anonymous)';
}

/** Every function with a body longer than `max` lines: `<file>:<line> <name> (<lines> lines)`. */
function longFunctions(file: string, text: string, max: number): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const last = source.getLineAndCharacterOfPosition(node.end).line;
      const name = nameOf(node, source);
      if (last - first + 1 > max) found.push(`${file}:${first + 1} ${name} (${last - first + 1} lines)`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('sizes', () => {
  const files = sourceFiles();
  const texts = new Map(files.map((file) => [file, readFileSync(join(ROOT, file), 'utf8')]));

  it('reads the whole project', () => {
    for (const file of ['infra/stack.ts', 'lambdas/api/handler.ts', 'cli/main.ts', 'bin/dreambooth.mjs', 'runner/dreambooth_runner.py']) {
      expect(files, file).toContain(file);
    }
    expect(files.some((file) => file.startsWith('test/'))).toBe(false);
  });

  it(`has no source file over ${MAX_FILE_LINES} lines`, () => {
    const long = [...texts]
      .filter(([file, text]) => !(file in ONE_FILE) && lineCount(text) > MAX_FILE_LINES)
      .map(([file, text]) => `${file} (${lineCount(text)} lines)`);
    expect(long, `files over ${MAX_FILE_LINES} lines:\n  ${long.join('\n  ')}`).toEqual([]);
  });

  it('keeps each exception to the file limit needed', () => {
    for (const file of Object.keys(ONE_FILE)) {
      expect(texts.has(file), `${file} is gone: drop it from ONE_FILE`).toBe(true);
      expect(lineCount(texts.get(file)!), `${file} fits now: drop it from ONE_FILE`).toBeGreaterThan(MAX_FILE_LINES);
    }
  });

  it(`has no function over ${MAX_FUNCTION_LINES} lines`, () => {
    const long = [...texts].filter(([file]) => SCRIPT.test(file)).flatMap(([file, text]) => longFunctions(file, text, MAX_FUNCTION_LINES));
    expect(long, `functions over ${MAX_FUNCTION_LINES} lines:\n  ${long.join('\n  ')}`).toEqual([]);
  });

  it('counts functions of every kind, from their first line to their last', () => {
    const body = (n: number) => Array.from({ length: n - 2 }, (_, i) => `  step(${i});`).join('\n');
    const toy = [
      `function declared() {\n${body(4)}\n}`,
      `const arrow = () => {\n${body(5)}\n};`,
      `class C {\n  method() {\n${body(4)}\n  }\n  constructor() {\n${body(3)}\n  }\n}`,
      `const expression = function () {\n${body(3)}\n};`,
      'declare function bodiless(): void;',
    ].join('\n');
    expect(longFunctions('toy.ts', toy, 3)).toEqual([
      'toy.ts:1 declared (4 lines)',
      'toy.ts:5 arrow (5 lines)',
      'toy.ts:11 method (4 lines)',
    ]);
    expect(longFunctions('toy.ts', toy, 2)).toEqual([
      'toy.ts:1 declared (4 lines)',
      'toy.ts:5 arrow (5 lines)',
      'toy.ts:11 method (4 lines)',
      'toy.ts:15 constructor (3 lines)',
      'toy.ts:19 expression (3 lines)',
    ]);
    expect(lineCount('a\nb\n')).toBe(2);
    expect(lineCount('a\nb')).toBe(2);
  });
});
