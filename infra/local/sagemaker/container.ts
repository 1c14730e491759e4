/**
 * A training job's container on the local docker engine, as SageMaker runs it: the image with its
 * entrypoint and arguments (else `<image> train`), `/opt/ml` mounted, the job's Environment; a
 * stop (the execution stopped, or MaxRuntimeInSeconds reached) is SIGTERM, then SIGKILL after
 * the grace period. `--network host`: the runner reaches local mode's callback route on
 * 127.0.0.1, as a job reaches the public API.
 */
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { CreateTrainingJob } from './request.ts';

export interface ContainerOptions {
  log: (line: string) => void;
  /** Seconds between SIGTERM and SIGKILL. @default 120 (SageMaker's) */
  stopGraceSeconds?: number;
}

export function runContainer(job: CreateTrainingJob, dir: string, opts: ContainerOptions, signal: AbortSignal): Promise<{ code: number; stopReason?: string }> {
  const name = job.TrainingJobName;
  const spec = job.AlgorithmSpecification;
  // `-e NAME` alone: docker takes the value from its own environment, so no value (the callback
  // URL holds a secret) appears on a command line.
  const env = Object.keys(job.Environment ?? {}).flatMap((k) => ['-e', k]);
  const [entry, ...entryArgs] = spec.ContainerEntrypoint ?? [];
  // The checkpoint folder is /opt/ml/checkpoints unless the job names another path.
  const local = job.CheckpointConfig?.LocalPath;
  const checkpoints = local && local !== '/opt/ml/checkpoints' ? ['-v', `${join(dir, 'checkpoints')}:${local}`] : [];
  const args = [
    'run', '--rm', '--name', name, '--network', 'host', '-v', `${dir}:/opt/ml`, ...checkpoints, ...env,
    ...(entry ? ['--entrypoint', entry] : []),
    spec.TrainingImage,
    ...entryArgs,
    ...(spec.ContainerArguments ?? (entry ? [] : ['train'])),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('docker', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...job.Environment } });
    const stopper = stopOnAbort(name, opts, signal, job.StoppingCondition?.MaxRuntimeInSeconds);
    const lines = lineLogger(name, opts);
    child.stdout.on('data', lines);
    child.stderr.on('data', lines);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stopReason: stopper.ended() }));
  });
}

/**
 * Stops the container `name` when `signal` aborts or after `maxSeconds`; `ended()` (call it once
 * the container has ended) says why it was stopped, if it was.
 */
function stopOnAbort(name: string, opts: ContainerOptions, signal: AbortSignal, maxSeconds?: number) {
  let stopReason: string | undefined;
  let exited = false;
  const stop = (reason: string) => {
    if (stopReason) return;
    stopReason = reason;
    opts.log(`job ${name}: stopping (${reason})`);
    // `docker stop` fails while the container is still being created (an image pull): try again until it ends.
    const attempt = () => execFile('docker', ['stop', '--time', String(opts.stopGraceSeconds ?? 120), name], () => {
      if (!exited) setTimeout(attempt, 1000).unref();
    });
    attempt();
  };
  const timer = maxSeconds ? setTimeout(() => stop('MaxRuntimeExceeded'), maxSeconds * 1000) : undefined;
  const onAbort = () => stop('Stopped');
  signal.addEventListener('abort', onAbort, { once: true });
  return {
    ended: () => {
      exited = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      return stopReason;
    },
  };
}

/** Whether the job's container is running (one a previous local mode started and outlived). */
export function containerRunning(name: string): Promise<boolean> {
  return new Promise((resolve) =>
    execFile('docker', ['inspect', '--format', '{{.State.Running}}', name], (err, stdout) => resolve(!err && stdout.trim() === 'true')),
  );
}

/**
 * Waits for a running container to end (`docker wait`: its exit status), stopping it as
 * runContainer does; its output goes on to local mode's log from now on.
 */
export function waitForContainer(name: string, opts: ContainerOptions, signal: AbortSignal, maxSeconds?: number): Promise<{ code: number; stopReason?: string }> {
  return new Promise((resolve, reject) => {
    const stopper = stopOnAbort(name, opts, signal, maxSeconds);
    const logs = spawn('docker', ['logs', '--follow', '--since', '0s', name], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = lineLogger(name, opts);
    logs.stdout.on('data', lines);
    logs.stderr.on('data', lines);
    logs.on('error', () => undefined);
    execFile('docker', ['wait', name], (err, stdout) => {
      logs.kill();
      const stopReason = stopper.ended();
      // Gone before the wait began (it ended, and --rm removed it): its status is unknown.
      if (err) return reject(new Error(`job ${name}: the container ended before it could be waited for`));
      resolve({ code: Number(stdout.trim()), stopReason });
    });
  });
}

/** The container's output, a log line per line, prefixed with the job. */
function lineLogger(name: string, opts: ContainerOptions): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    const parts = pending.split('\n');
    pending = parts.pop()!;
    for (const line of parts) if (line.trim()) opts.log(`job ${name}: ${line}`);
  };
}
