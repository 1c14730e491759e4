/**
 * Staging 1 GiB: stage-weights' core (download from a loopback file server → S3 multipart →
 * archive checks by ranged reads) against a plain multipart upload of the same file, both into
 * s3rver, each run in a child process for its peak RSS. Alternated, so load drifts hit both.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { build } from 'esbuild';
import { REPO_ROOT } from '../infra/constructs/function.ts';
import { newTraining, startFixture } from '../test/helpers/aws-local.ts';
import { MiB, runJsonChild, writeWeightsZip } from './lib.ts';

export interface StageRun {
  seconds: number;
  peak_rss_mb: number;
}

export interface StageResults {
  bytes: number;
  stage: StageRun[];
  plain: StageRun[];
}

/**
 * The trainer's file server in a process of its own: in this one it would compete with s3rver
 * for the same thread and slow the staging it feeds.
 */
async function serveFile(path: string, bytes: number): Promise<{ url: string; stop: () => void }> {
  const code = `const s = require('node:http').createServer((q, r) => {
    r.writeHead(200, { 'content-type': 'application/zip', 'content-length': ${bytes} });
    require('node:fs').createReadStream(process.argv[1], { highWaterMark: 1 << 20 }).pipe(r);
  }).listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const child = spawn(process.execPath, ['-e', code, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [port] = (await once(child.stdout!, 'data')) as [Buffer];
  return { url: `http://127.0.0.1:${port.toString().trim()}`, stop: () => child.kill() };
}

/** Bundled as the Lambda is (the SDK external): run by plain node, its memory is the function's, not a loader's. */
async function bundleChild(outfile: string): Promise<string> {
  await build({
    entryPoints: [join(REPO_ROOT, 'bench', 'stage-child.ts')],
    absWorkingDir: REPO_ROOT,
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'error',
    external: ['@aws-sdk/*'],
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
  return outfile;
}

export async function measureStaging(workDir: string, reps: number, log: (l: string) => void): Promise<StageResults> {
  const zip = join(workDir, 'stage.zip');
  await writeWeightsZip(zip, { 'unet/diffusion_pytorch_model.safetensors': 1024 * MiB });
  const bytes = statSync(zip).size;
  const files = await serveFile(zip, bytes);
  const fx = await startFixture({ as: 'stage-weights' });
  const script = await bundleChild(join(REPO_ROOT, 'bench', '.out', 'stage-child.mjs'));
  const child = (args: string[]) =>
    runJsonChild<StageRun>(process.execPath, ['--no-warnings', script, ...args], {
      ...process.env,
      DREAMBOOTH_CONFIG: JSON.stringify(fx.deps.config),
    }, REPO_ROOT);
  const drop = (key: string) => fx.operator.s3.send(new DeleteObjectCommand({ Bucket: fx.deps.bucket, Key: key }));
  const out: StageResults = { bytes, stage: [], plain: [] };
  try {
    for (let i = 0; i < reps; i++) {
      log(`staging 1 GiB, run ${i + 1} of ${reps}: plain upload, then stage-weights`);
      out.plain.push(await child(['plain', zip, `staged/bench-plain-${i}.zip`]));
      await drop(`staged/bench-plain-${i}.zip`);
      const t = await newTraining(fx.deps);
      out.stage.push(await child(['stage', t.id, `${files.url}/output.zip`]));
      await drop(`staged/${t.id}/output.zip`);
    }
    return out;
  } finally {
    await fx.stop();
    files.stop();
  }
}
