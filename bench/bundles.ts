/**
 * Each Lambda bundle as `infra/constructs/function.ts` makes it (esbuild, ESM, minified, node22,
 * the AWS SDK external since the Lambda runtime provides it, the configuration baked in), its
 * size, and its cold import time in a fresh `node` process. The build-image script (CodeBuild,
 * everything bundled) is measured too.
 */
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { bundleBuildImage } from '../infra/constructs/build.ts';
import { HANDLER_NAMES, REPO_ROOT } from '../infra/constructs/function.ts';
import { parseConfig } from '#shared/config';
import { median, runJsonChild } from './lib.ts';

export interface BundleRow {
  name: string;
  kb: number;
  importMs: number;
}

// Reported at exit: the build-image script runs on import and exits with its usage when given no arguments.
const IMPORT = `const t = performance.now();
process.on('exit', () => { console.log(JSON.stringify({ ms: performance.now() - t })); process.exitCode = 0; });
await import(process.argv[1]);`;

export async function measureBundles(outDir: string, imports = 5): Promise<BundleRow[]> {
  mkdirSync(outDir, { recursive: true });
  const cdk = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as { context: { dreambooth: unknown } };
  const config = parseConfig(cdk.context.dreambooth);
  const files: [string, string][] = [];
  for (const name of HANDLER_NAMES) {
    const outfile = join(outDir, `${name}.mjs`);
    await build({
      entryPoints: [join(REPO_ROOT, 'lambdas', name, 'handler.ts')],
      absWorkingDir: REPO_ROOT,
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node22',
      minify: true,
      logLevel: 'error',
      // As infra/constructs/function.ts bundles them: the SDK inside.
      external: [],
      // CDK's default for ESM output: the SDK's ES modules, which tree-shake.
      mainFields: ['module', 'main'],
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
      define: { 'process.env.DREAMBOOTH_CONFIG': JSON.stringify(JSON.stringify(config)) },
    });
    files.push([name, outfile]);
  }
  files.push(['build-image (CodeBuild)', bundleBuildImage(join(outDir, 'build-image'))]);
  const rows: BundleRow[] = [];
  for (const [name, file] of files) {
    const times: number[] = [];
    for (let i = 0; i < imports; i++) {
      const r = await runJsonChild<{ ms: number }>(process.execPath, ['--no-warnings', '--input-type=module', '-e', IMPORT, file], {
        PATH: process.env.PATH,
        AWS_REGION: 'us-east-1',
      }).catch(() => ({ ms: NaN }));
      times.push(r.ms);
    }
    rows.push({ name, kb: statSync(file).size / 1024, importMs: median(times) });
  }
  return rows;
}
