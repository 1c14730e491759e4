/**
 * The docker path of the build-model project: the phases of buildspecs/build-model.yml run with
 * bash as CodeBuild runs them, in a folder holding the project's source (the serving adapter),
 * with an `aws` shim (./bin/aws) for `aws s3 cp` on the PATH.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { copyServingAdapter } from '../../constructs/build.ts';

export interface DockerBuildOptions {
  /** `127.0.0.1:<port>` of the local registry. */
  registryHost: string | null;
  /** Extra environment of the build (AWS endpoints for the shim, DOCKER_HOST). */
  env: Record<string, string | undefined>;
  log: (line: string) => void;
}

const HERE = dirname(fileURLToPath(import.meta.url));
const BUILDSPEC = join(HERE, '..', '..', '..', 'buildspecs', 'build-model.yml');
const SHIM_DIR = join(HERE, 'bin');

interface Buildspec {
  env?: { 'exported-variables'?: string[] };
  phases: Record<string, { commands?: string[] }>;
}

/** Runs the buildspec's phases as CodeBuild does: one shell, phase after phase, exported variables read at the end. */
export async function dockerBuild(
  env: Record<string, string>,
  opts: DockerBuildOptions,
  signal: AbortSignal,
): Promise<Record<string, string>> {
  const spec = parse(await readFile(BUILDSPEC, 'utf8')) as Buildspec;
  const exported = spec.env?.['exported-variables'] ?? [];
  const dir = await mkdtemp(join(tmpdir(), 'dreambooth-build-'));
  await writeFile(join(dir, '.buildspec.sh'), script(spec, exported));
  // The project's source on AWS: the adapter the build appends as the SageMaker variant.
  copyServingAdapter(dir);
  const tail: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      tail.push(line);
      if (tail.length > 40) tail.shift();
      if (/^(Step \d+|#\d+ |Successfully|[0-9a-f]{12}: Pushed|digest:|Sending build context)/.test(line))
        opts.log(`build ${env.TRAINING_ID}: ${line.trim()}`);
    }
  };
  try {
    const code = await runScript(dir, { ...opts.env, ...env, REGISTRY_HOST: opts.registryHost ?? '' }, collect, signal);
    if (code !== 0 || signal.aborted) {
      const phase = await readFile(join(dir, '.phase'), 'utf8').catch(() => 'PRE_BUILD');
      throw Object.assign(new Error(`build failed in ${phase}`), { phase, tail: tail.join('\n') });
    }
    const out: Record<string, string> = {};
    for (const v of exported) out[v] = (await readFile(join(dir, v), 'utf8')).trim();
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One bash script of the phases; each phase's name is written where a failure can tell it. */
function script(spec: Buildspec, exported: string[]): string {
  return [
    'set -eo pipefail',
    ...['pre_build', 'build'].flatMap((p) => [`printf '%s' ${p.toUpperCase()} > "$__PHASE"`, ...(spec.phases[p]?.commands ?? [])]),
    `printf '%s' POST_BUILD > "$__PHASE"`,
    'export CODEBUILD_BUILD_SUCCEEDING=1',
    ...(spec.phases.post_build?.commands ?? []),
    ...exported.map((v) => `printf '%s' "$${v}" > "$__OUT/${v}"`),
  ].join('\n');
}

/** Runs the script in `dir` in a process group of its own, which a stop kills whole; answers its exit code. */
function runScript(
  dir: string,
  env: Record<string, string | undefined>,
  collect: (chunk: Buffer) => void,
  signal: AbortSignal,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const child = spawn('bash', ['.buildspec.sh'], {
      cwd: dir,
      detached: true,
      env: {
        ...process.env,
        ...env,
        REGISTRY_TYPE: 'oci',
        REGISTRY_USERNAME: '',
        REGISTRY_PASSWORD: '',
        PATH: `${SHIM_DIR}:${process.env.PATH}`,
        __PHASE: join(dir, '.phase'),
        __OUT: dir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const onAbort = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    signal.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('close', (c) => {
      signal.removeEventListener('abort', onAbort);
      resolve(c ?? 1);
    });
  });
}
