/**
 * Node's flags for a worker thread that runs plain JavaScript (the storage services, the
 * functions' bundles, the build worker's bundle): the parent's, less the hooks that load
 * TypeScript (`--import tsx` under `npm start`). A worker inherits them otherwise, and tsx then
 * took each worker's load of s3rver, dynalite or a bundle through its transform and source-map
 * work: most of a storage worker's start and tens of MB per worker. Other flags (a profiler's,
 * a heap limit) are kept.
 */
const HOOKS = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader']);

export function plainWorkerFlags(flags: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const flag = flags[i]!;
    const [name, inline] = flag.split(/=(.*)/s) as [string, string | undefined];
    if (!HOOKS.has(name)) {
      out.push(flag);
      continue;
    }
    const value = inline ?? flags[++i] ?? '';
    if (!/(^|[\\/@])tsx([\\/]|$)/.test(value)) out.push(...(inline === undefined ? [flag, value] : [flag]));
  }
  return out;
}
