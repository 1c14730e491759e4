/**
 * A docker engine for the benchmark: the one DOCKER_HOST names, or a private dockerd started
 * the way .ci/run starts one (vfs, no iptables, no bridge, its own socket), stopped at the end.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const DOCKERD = '/usr/sbin/dockerd';

export interface DockerEngine {
  env: NodeJS.ProcessEnv;
  docker(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

async function reachable(env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    await run('docker', ['version', '--format', '{{.Server.Version}}'], { env, timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function engine(env: NodeJS.ProcessEnv, stop: () => Promise<void>): DockerEngine {
  return {
    env,
    docker: async (...args) => (await run('docker', args, { env, maxBuffer: 64 * 1024 * 1024 })).stdout,
    stop,
  };
}

/** null when no engine is reachable and none can be started. */
export async function startDocker(workDir: string, log: (line: string) => void): Promise<DockerEngine | null> {
  if (process.env.DOCKER_HOST) {
    if (await reachable(process.env)) return engine(process.env, async () => undefined);
    log(`DOCKER_HOST=${process.env.DOCKER_HOST} is not reachable`);
    return null;
  }
  if (!existsSync(DOCKERD) || process.getuid?.() !== 0) return null;
  const socket = join(workDir, 'docker.sock');
  const child: ChildProcess = spawn(
    DOCKERD,
    ['--host', `unix://${socket}`, '--data-root', join(workDir, 'docker'), '--exec-root', join(workDir, 'exec'),
      '--pidfile', join(workDir, 'docker.pid'), '--storage-driver', 'vfs', '--iptables=false', '--ip6tables=false', '--bridge=none'],
    { stdio: 'ignore' },
  );
  const env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  for (let i = 0; i < 60; i++) {
    if (await reachable(env)) {
      log('started a private docker engine');
      return engine(env, stop);
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  await stop();
  return null;
}
