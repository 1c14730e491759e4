/**
 * The synthesized stack kept in the data directory between starts: a start with the same
 * configuration, on the same sources, reads the last synthesis back instead of loading CDK and
 * synthesizing again (seconds, and CDK's hundred-odd MB kept for the process's life). The key
 * is the configuration, Node's version and the size and modification time of every file the
 * synthesis could read: the repository's own (its sources, buildspecs, the runner, cdk.json,
 * the lockfiles), tests, docs and the data directory aside, and the installed dependencies'
 * lock (npm rewrites it on every install). A stat of each is milliseconds.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '#shared/config';
import type { PrincipalPolicies } from './policies.ts';
import type { SynthesizedTemplate } from './template.ts';

export const STACK_CACHE = 'stack.json';

/** What local mode takes from the synthesized stack: the template, and each role's policies. */
export interface LocalStack extends SynthesizedTemplate {
  policies: Record<string, PrincipalPolicies>;
}

/** Directories of the repository no synthesis reads. */
const NOT_INPUTS = new Set(['node_modules', 'test', 'docs', 'bench']);
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The stack for `config`: the cached one when its key still holds, else synthesized (and cached). */
export async function localStack(config: Config, dataDir: string, root = REPO_ROOT): Promise<{ stack: LocalStack; cached: boolean }> {
  const file = join(dataDir, STACK_CACHE);
  const key = stackKey(config, dataDir, root);
  try {
    const kept = JSON.parse(readFileSync(file, 'utf8')) as { key: string; stack: LocalStack };
    if (kept.key === key) return { stack: kept.stack, cached: true };
  } catch {
    // none yet, or unreadable: synthesized below
  }
  // Loaded only here: a cached start never loads CDK's synthesis.
  const [{ synthesize }, { localPolicies }] = await Promise.all([import('./synthesize.ts'), import('./policies.ts')]);
  // Validated as `cdk synth` validates it: local mode is never looser than a deploy.
  const synth = synthesize(config, { validate: true });
  const stack: LocalStack = { template: synth.template, functions: synth.functions, machinePaths: synth.machinePaths, policies: localPolicies(synth.stack) };
  // Whole or not at all: a start killed mid-write leaves no half file to trust.
  writeFileSync(`${file}.tmp`, JSON.stringify({ key, stack }));
  renameSync(`${file}.tmp`, file);
  return { stack, cached: false };
}

export function stackKey(config: Config, dataDir: string, root = REPO_ROOT): string {
  const hash = createHash('sha256').update(JSON.stringify({ config, node: process.version }));
  const data = resolve(dataDir);
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, entry.name);
      if (entry.name.startsWith('.') || path === data || (dir === root && NOT_INPUTS.has(entry.name))) continue;
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) stamp(path);
    }
  };
  const stamp = (path: string) => {
    const st = statSync(path, { throwIfNoEntry: false });
    hash.update(`${relative(root, path)}\0${st ? `${st.size}\0${st.mtimeMs}` : '-'}\n`);
  };
  walk(root);
  stamp(join(root, 'node_modules', '.package-lock.json'));
  return hash.digest('hex');
}
