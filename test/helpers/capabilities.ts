/**
 * What this machine offers the tests beyond Node and npm, decided in one place. On a bare
 * machine (the README's `npm ci && npm test` with only Node and npm) local mode keeps images in
 * an OCI image layout and builds with `append`, and the tests follow it there; only what
 * nothing but a registry or a docker engine can show is skipped, with the reason printed. In
 * CI (`CI` set) a missing registry or engine is a failure instead: CI must prove both.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { REGISTRY_BIN } from '#infra/local/ecr';

export type Capability<T> = { skip: false; value: T } | { skip: true; reason: string };

const inCi = () => Boolean(process.env.CI);

function decide<T>(skipped: string, probe: () => T | { missing: string }): Capability<T> {
  const found = probe();
  if (typeof found === 'object' && found !== null && 'missing' in found) {
    if (inCi()) throw new Error(`CI must provide ${found.missing} (for ${skipped})`);
    const reason = `${found.missing} is not available here`;
    console.warn(`skipping ${skipped}: ${reason}`);
    return { skip: true, reason };
  }
  return { skip: false, value: found as T };
}

/** Debian's docker-registry, for tests that start a registry of their own: its path. */
export function requireRegistry(skipped: string): Capability<string> {
  return decide(skipped, () => (existsSync(REGISTRY_BIN) ? REGISTRY_BIN : { missing: `a registry (${REGISTRY_BIN}: apt-get install docker-registry)` }));
}

let engine: string | null | undefined;

/** A docker engine that the `docker` CLI reaches (DOCKER_HOST or the default socket): its version. */
export function requireDocker(skipped: string): Capability<string> {
  engine ??= dockerVersion();
  const version = engine;
  return decide(skipped, () => version ?? { missing: 'a docker engine (the docker CLI and a daemon at DOCKER_HOST or /var/run/docker.sock)' });
}

function dockerVersion(): string | null {
  try {
    return execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
  } catch {
    return null;
  }
}

/**
 * The image store local mode takes for a test that passes `registry: DREAMBOOTH_TEST_REGISTRY`
 * (set or not): that registry, else the one it starts from Debian's docker-registry, else (a
 * bare machine) the OCI layout under its data directory. In CI it must be a registry.
 */
export function localModeImages(): 'registry' | 'layout' {
  if (process.env.DREAMBOOTH_TEST_REGISTRY || existsSync(REGISTRY_BIN)) return 'registry';
  if (inCi()) throw new Error(`CI must provide a registry for local mode (DREAMBOOTH_TEST_REGISTRY or ${REGISTRY_BIN})`);
  return 'layout';
}

/** For a local-mode test only a registry can show (e.g. a `host/repo@sha256:…` reference). */
export function requireLocalModeRegistry(skipped: string): Capability<'registry'> {
  return decide(skipped, () => (localModeImages() === 'registry' ? ('registry' as const) : { missing: 'a registry for local mode (DREAMBOOTH_TEST_REGISTRY or docker-registry)' }));
}

let cfnLint: string | null | undefined;

/** cfn-lint, AWS's CloudFormation linter (a Python tool: `pip install cfn-lint`): its version. */
export function requireCfnLint(skipped: string): Capability<string> {
  cfnLint ??= cfnLintVersion();
  const version = cfnLint;
  return decide(`${skipped} (pip install cfn-lint)`, () => version ?? { missing: 'cfn-lint' });
}

function cfnLintVersion(): string | null {
  try {
    return execFileSync('cfn-lint', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 30_000 }).trim();
  } catch {
    return null;
  }
}
