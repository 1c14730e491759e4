/**
 * Local mode's function bundles, rebuilt only when something they are made of changed: each
 * start reuses the last start's bundles when the same functions, with the same baked values,
 * come from source files of the same size and modification time (esbuild's metafile lists every
 * file a bundle read, node_modules included). esbuild has no cache of its own to ask; a stat of
 * each input is milliseconds where a rebuild of every bundle is seconds.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '#shared/config';
import { SERVING_ADAPTER } from '#shared/oci/serving-variant';
import { bundleLambdas, lambdaDefine, REPO_ROOT } from '../../constructs/function.ts';
import type { HandlerName } from '../../handler-names.ts';

const STAMP = 'bundles.json';

interface Stamp {
  key: string;
  /** Input path (relative to the repository) → [size, mtimeMs]. */
  inputs: Record<string, [number, number]>;
}

/** Builds the bundles unless the last build is still good; true when it built. */
export async function ensureBundles(names: readonly HandlerName[], outdir: string, config: Config): Promise<boolean> {
  const key = createHash('sha256')
    .update(JSON.stringify({ names: [...names].sort(), define: names.map((n) => lambdaDefine(config, n)), node: process.version }))
    .digest('hex');
  // The endpoint step pushes templates' SageMaker variants with the adapter it finds beside its bundle.
  const adapter = () => copyFileSync(join(REPO_ROOT, 'serving', SERVING_ADAPTER), join(outdir, SERVING_ADAPTER));
  if (upToDate(key, names, outdir)) {
    adapter();
    return false;
  }
  const metafile = await bundleLambdas(names, outdir, config);
  const inputs: Stamp['inputs'] = {};
  for (const path of Object.keys(metafile.inputs)) {
    const st = statSync(join(REPO_ROOT, path), { throwIfNoEntry: false });
    if (st) inputs[path] = [st.size, st.mtimeMs];
  }
  writeFileSync(join(outdir, STAMP), JSON.stringify({ key, inputs } satisfies Stamp));
  adapter();
  return true;
}

function upToDate(key: string, names: readonly HandlerName[], outdir: string): boolean {
  let stamp: Stamp;
  try {
    stamp = JSON.parse(readFileSync(join(outdir, STAMP), 'utf8')) as Stamp;
  } catch {
    return false;
  }
  if (stamp.key !== key || !names.every((n) => existsSync(join(outdir, `${n}.cjs`)))) return false;
  return Object.entries(stamp.inputs).every(([path, [size, mtime]]) => {
    const st = statSync(join(REPO_ROOT, path), { throwIfNoEntry: false });
    return st !== undefined && st.size === size && st.mtimeMs === mtime;
  });
}
