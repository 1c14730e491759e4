/**
 * The CodeBuild step in local mode, both paths real:
 * - docker: a docker engine and a registry are reachable → run the commands of
 *   buildspecs/build-model.yml themselves with bash (an `aws` shim serves `aws s3 cp`);
 * - append: no daemon → build the same image without one: the template's layers stay where
 *   they are, one new layer holds `src/weights/…`, then config and manifest.
 * Either way the result has the shape of startBuild.sync's output, and a failed build throws
 * (as AWS fails the task) with the log tail in the cause.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { S3Client } from '@aws-sdk/client-s3';
import { OciLayout } from '#shared/oci/layout';
import { RegistryClient } from '#shared/oci/registry';
import type { ImageStore } from '#shared/oci/types';
import { buildImage, BuildImageEnv } from '../../lambdas/build-image/core.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUILDSPEC = join(ROOT, 'buildspecs', 'build-model.yml');
const SHIM_DIR = join(ROOT, 'infra', 'local', 'bin');

export type BuildStrategy = 'docker' | 'append';

export interface LocalBuildOptions {
  strategy: BuildStrategy;
  /** `127.0.0.1:<port>` of the local registry, or null for OCI layouts on disk. */
  registryHost: string | null;
  s3: S3Client;
  /** Extra environment of the docker path (AWS endpoints for the shim, DOCKER_HOST). */
  env: Record<string, string | undefined>;
  log: (line: string) => void;
  /** Caps checked on the bytes really read from the archive, not on its headers. */
  limits: { maxEntries: number; maxBytes: number };
}

interface StartBuildInput {
  ProjectName?: string;
  EnvironmentVariablesOverride?: { Name: string; Value: string; Type?: string }[];
}

export class BuildFailed extends Error {
  constructor(message: string) {
    super(message);
    // The error name Step Functions reports for a failed startBuild.sync.
    this.name = 'States.TaskFailed';
  }
}

export async function runLocalBuild(input: unknown, opts: LocalBuildOptions, signal: AbortSignal) {
  const env = Object.fromEntries(((input as StartBuildInput).EnvironmentVariablesOverride ?? []).map((v) => [v.Name, v.Value]));
  const id = `local:${env.TRAINING_ID ?? 'build'}-${Date.now().toString(36)}`;
  const started = Date.now();
  try {
    const exported = opts.strategy === 'docker' ? await dockerBuild(env, opts, signal) : await appendBuild(env, opts);
    opts.log(`build ${env.TRAINING_ID}: pushed ${exported.IMAGE_URI} in ${((Date.now() - started) / 1000).toFixed(1)} s (${opts.strategy})`);
    return {
      Build: {
        Id: id,
        BuildStatus: 'SUCCEEDED',
        ExportedEnvironmentVariables: Object.entries(exported).map(([Name, Value]) => ({ Name, Value })),
      },
    };
  } catch (e) {
    const failure = e as Error & { phase?: string; tail?: string };
    const cause = {
      Build: { Id: id, BuildStatus: signal.aborted ? 'STOPPED' : 'FAILED', Phases: [{ PhaseType: failure.phase ?? 'BUILD', PhaseStatus: 'FAILED' }] },
      log_tail: failure.tail ?? failure.message,
    };
    throw new BuildFailed(JSON.stringify(cause));
  }
}

/** The same code CodeBuild runs for the append strategy (lambdas/build-image). */
async function appendBuild(env: Record<string, string>, opts: LocalBuildOptions): Promise<Record<string, string>> {
  try {
    const parsed = BuildImageEnv.parse({
      ...env,
      ARCHIVE_MAX_ENTRIES: opts.limits.maxEntries,
      ARCHIVE_MAX_UNCOMPRESSED_BYTES: opts.limits.maxBytes,
    });
    return { ...(await buildImage(parsed, { s3: opts.s3, storeFor: (r) => store(r, opts.registryHost), log: (l) => opts.log(`build ${env.TRAINING_ID}: ${l}`) })) };
  } catch (e) {
    throw Object.assign(new Error((e as Error).message), { phase: 'BUILD', tail: `append build failed: ${(e as Error).message}` });
  }
}

/** `host:port/repo` → registry; `oci:<dir>` → an OCI layout directory. */
function store(repository: string, registryHost: string | null): { store: ImageStore; repo: string } {
  if (repository.startsWith('oci:')) return { store: new OciLayout(repository.slice(4)), repo: '' };
  const slash = repository.indexOf('/');
  const host = repository.slice(0, slash);
  if (registryHost && host !== registryHost) throw new Error(`${repository} is not in the local registry ${registryHost}`);
  return { store: new RegistryClient({ baseUrl: `http://${host}` }), repo: repository.slice(slash + 1) };
}

/** Runs the buildspec's phases as CodeBuild does: one shell, phase after phase, exported variables read at the end. */
async function dockerBuild(env: Record<string, string>, opts: LocalBuildOptions, signal: AbortSignal): Promise<Record<string, string>> {
  const spec = parse(await readFile(BUILDSPEC, 'utf8')) as {
    env?: { 'exported-variables'?: string[] };
    phases: Record<string, { commands?: string[] }>;
  };
  const exported = spec.env?.['exported-variables'] ?? [];
  const dir = await mkdtemp(join(tmpdir(), 'dreambooth-build-'));
  const script = [
    'set -eo pipefail',
    ...['pre_build', 'build'].flatMap((p) => [`printf '%s' ${p.toUpperCase()} > "$__PHASE"`, ...(spec.phases[p]?.commands ?? [])]),
    `printf '%s' POST_BUILD > "$__PHASE"`,
    'export CODEBUILD_BUILD_SUCCEEDING=1',
    ...(spec.phases.post_build?.commands ?? []),
    ...exported.map((v) => `printf '%s' "$${v}" > "$__OUT/${v}"`),
  ].join('\n');
  await writeFile(join(dir, '.buildspec.sh'), script);
  const tail: string[] = [];
  try {
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn('bash', ['.buildspec.sh'], {
        cwd: dir,
        detached: true,
        env: {
          ...process.env,
          ...opts.env,
          ...env,
          REGISTRY_TYPE: 'oci',
          REGISTRY_HOST: opts.registryHost ?? '',
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
      const collect = (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (!line.trim()) continue;
          tail.push(line);
          if (tail.length > 40) tail.shift();
          if (/^(Step \d+|#\d+ |Successfully|[0-9a-f]{12}: Pushed|digest:|Sending build context)/.test(line)) opts.log(`build ${env.TRAINING_ID}: ${line.trim()}`);
        }
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      child.on('error', reject);
      child.on('close', (c) => {
        signal.removeEventListener('abort', onAbort);
        resolve(c ?? 1);
      });
    });
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
