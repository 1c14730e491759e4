/**
 * Each Lambda bundle as `infra/constructs/function.ts` makes it (its LAMBDA_BUNDLE settings: the
 * SDK inside, tree-shaken, the configuration baked in), its size, and its cold import time in a
 * fresh `node` process. The build-image script (CodeBuild, everything bundled) is measured too.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stop } from 'esbuild';
import { bundleBuildImage } from '../infra/constructs/build.ts';
import { bundleLambda, HANDLER_NAMES, LAMBDA_BUNDLE, s3SdkBeside } from '../infra/constructs/function.ts';
import { loadConfiguration } from '../infra/configuration.ts';
import { median, runJsonChild } from './lib.ts';

export interface BundleRow {
  name: string;
  /**
   * The Lambdas carry the targets; the CodeBuild script, the S3 SDK's file (`lazy`: loaded on the
   * first S3 call of the api or notify, not at their start) and an empty module (Node's own floor)
   * are context.
   */
  kind: 'lambda' | 'script' | 'lazy' | 'floor';
  kb: number;
  importMs: number;
}

// Loaded as Lambda's Node runtime loads a handler: require() for CommonJS, import() for ES
// modules. Reported at exit: the build-image script runs on import and exits with its usage
// when given no arguments.
const IMPORT = `const t = performance.now();
process.on('exit', () => { console.log(JSON.stringify({ ms: performance.now() - t })); process.exitCode = 0; });
const file = process.argv[1];
if (file.endsWith('.cjs')) (await import('node:module')).createRequire(file)(file);
else await import(file);`;

export async function measureBundles(outDir: string, imports = 11): Promise<BundleRow[]> {
  mkdirSync(outDir, { recursive: true });
  const config = loadConfiguration({ source: 'cdk.json context "dreambooth"' });
  const files: [string, string][] = [];
  for (const name of HANDLER_NAMES) {
    const outfile = join(outDir, `${name}.${LAMBDA_BUNDLE.format === 'esm' ? 'mjs' : 'cjs'}`);
    await bundleLambda(name, outfile, config);
    files.push([name, outfile]);
  }
  const lazy = 's3-sdk (on first S3 use)';
  files.push([lazy, s3SdkBeside(files[0]![1])]);
  const script = 'build-image (CodeBuild)';
  const floor = 'empty module (floor)';
  files.push([script, bundleBuildImage(join(outDir, 'build-image'))]);
  writeFileSync(join(outDir, 'empty.cjs'), '');
  files.push([floor, join(outDir, 'empty.cjs')]);
  // Nothing else of ours runs while the imports are timed.
  await stop();
  // Round-robin, so a slow moment of this shared machine lands on every bundle alike.
  const times = new Map<string, number[]>(files.map(([name]) => [name, []]));
  for (let i = 0; i < imports; i++) {
    for (const [name, file] of files) {
      const r = await runJsonChild<{ ms: number }>(process.execPath, ['--no-warnings', '--input-type=module', '-e', IMPORT, file], {
        PATH: process.env.PATH,
        AWS_REGION: 'us-east-1',
      }).catch(() => ({ ms: NaN }));
      times.get(name)!.push(r.ms);
    }
  }
  const kind = (name: string): BundleRow['kind'] => (name === script ? 'script' : name === lazy ? 'lazy' : name === floor ? 'floor' : 'lambda');
  const rows = files.map(([name, file]) => ({ name, kind: kind(name), kb: statSync(file).size / 1024, importMs: median(times.get(name)!) }));
  return rows;
}
