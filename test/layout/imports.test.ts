/**
 * No import circles among the project's own modules. A circle makes load order matter (a module
 * sees the other's bindings still undefined while both evaluate) and ties two files so neither
 * can be read, tested or moved alone. Every .ts/.mts/.cts/.mjs/.cjs file outside node_modules and
 * build output is a node; every static import, re-export, `import()` and `require()` whose
 * specifier resolves to another such file is an edge. Type-only imports count too: they vanish
 * at run time, but they still tie the two files together for a reader, so the fix is the same —
 * move the shared piece to a module of its own.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from '#test-helpers/paths';

const SKIPPED_DIRS = new Set(['node_modules', 'cdk.out', '.git', '.dreambooth', 'coverage']);
const SOURCE = /\.(ts|mts|cts|mjs|cjs)$/;

/** The package.json "imports" aliases, e.g. `#shared/*` → `./lambdas/shared/*.ts`. */
function aliases(): [prefix: string, suffix: string, target: string][] {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    imports?: Record<string, string>;
  };
  return Object.entries(pkg.imports ?? {}).map(([pattern, target]) => {
    const [prefix, suffix = ''] = pattern.split('*') as [string, string?];
    return [prefix, suffix, target];
  });
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (SKIPPED_DIRS.has(name)) return [];
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return SOURCE.test(name) && !name.endsWith('.d.ts') ? [path] : [];
  });
}

/** The file a specifier names, or undefined for a package or a non-source file. */
function resolveSpecifier(from: string, specifier: string, files: Set<string>): string | undefined {
  let base: string | undefined;
  if (specifier.startsWith('.')) base = resolve(dirname(from), specifier);
  for (const [prefix, suffix, target] of aliases()) {
    if (!specifier.startsWith(prefix) || !specifier.endsWith(suffix)) continue;
    const star = specifier.slice(prefix.length, specifier.length - suffix.length);
    base = resolve(ROOT, target.replace('*', star));
  }
  if (base === undefined) return undefined;
  const candidates = [base, `${base}.ts`, join(base, 'index.ts'), base.replace(/\.js$/, '.ts')];
  return candidates.find((candidate) => files.has(candidate));
}

/** Each source file (relative to the root) with the source files it imports. */
function importGraph(root = ROOT): Map<string, string[]> {
  const files = new Set(sourceFiles(root));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = importedFiles
      .map(({ fileName }) => resolveSpecifier(file, fileName, files))
      .filter((target): target is string => target !== undefined)
      .map((target) => relative(root, target));
    graph.set(relative(root, file), [...new Set(targets)]);
  }
  return graph;
}

/** Tarjan's strongly connected components with more than one file, or one that imports itself. */
function circles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || graph.get(node)?.includes(node)) found.push(component.sort());
  };
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node);
  return found;
}

/** One shortest path round a component from its first file, for the failure message. */
function loopThrough(component: string[], graph: Map<string, string[]>): string {
  const members = new Set(component);
  const start = component[0]!;
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift()!;
    for (const next of graph.get(node) ?? []) {
      if (!members.has(next)) continue;
      if (next === start) {
        const path = [start];
        for (let at = node; at !== start; at = cameFrom.get(at)!) path.splice(1, 0, at);
        const more = component.length > path.length ? ` (component of ${component.length}: ${component.join(', ')})` : '';
        return `${[...path, start].join(' → ')}${more}`;
      }
      if (!cameFrom.has(next)) {
        cameFrom.set(next, node);
        queue.push(next);
      }
    }
  }
  return component.join(', ');
}

describe('imports', () => {
  const graph = importGraph();

  it('reads the whole project, aliases included', () => {
    for (const dir of ['infra/', 'lambdas/', 'cli/', 'bin/', 'bench/', 'test/helpers/']) {
      expect([...graph.keys()].some((file) => file.startsWith(dir)), dir).toBe(true);
    }
    expect(graph.get('lambdas/api/handler.ts')).toContain('lambdas/shared/log.ts');
    expect(graph.get('bin/dreambooth.mjs')).toContain('cli/main.ts');
  });

  it('has no circles', () => {
    const loops = circles(graph).map((component) => loopThrough(component, graph));
    expect(loops, `import circles:\n  ${loops.join('\n  ')}`).toEqual([]);
  });

  it('finds a circle, a longer one, and a file that imports itself', () => {
    const toy = new Map([
      ['a', ['b']],
      ['b', ['a', 'c']],
      ['c', ['d']],
      ['d', ['e']],
      ['e', ['c']],
      ['f', ['f']],
      ['g', ['a']],
    ]);
    expect(circles(toy)).toEqual(expect.arrayContaining([['a', 'b'], ['c', 'd', 'e'], ['f']]));
    expect(circles(toy)).toHaveLength(3);
    expect(loopThrough(['c', 'd', 'e'], toy)).toBe('c → d → e → c');
  });
});
