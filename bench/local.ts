/**
 * Local mode's start-up and weight, as `npm start` runs it (one process, its data directory):
 * - start_s: a second start on the same data directory (the first built the function bundles),
 *   from spawning the process to its first answered request;
 * - resume_s: the same with a hundred executions to resume (trainings queued on a one-slot demo
 *   trainer when local mode was killed);
 * - idle_rss_mb: the resident memory of local mode's whole process tree, idle after a start.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { instanceDataZip } from '../infra/local/demo.ts';
import { startLocal, startReceiver, type Local } from '../test/helpers/local-mode.ts';

export interface LocalResults {
  start_s: number;
  resume_s: number;
  resumed: number;
  idle_rss_mb: number;
}

const CONFIG = { trainers: { demo: { backend: 'demo', steps_per_second: 1, concurrency: 1 } }, limits: { page_size: 1000 } };

export async function measureLocal(log: (l: string) => void): Promise<LocalResults> {
  const dataDir = await mkdtemp(join(tmpdir(), 'dreambooth-bench-local-'));
  const receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(1));
  try {
    log('local: a first start (builds the bundles), then a second, timed');
    await (await startLocal({ dataDir, registry: 'none', config: CONFIG })).stop();
    const { local, seconds: start } = await timedStart(dataDir);
    await new Promise((r) => setTimeout(r, 2000)); // idle: what it holds when nothing runs
    const rss = treeRssMb(local.proc.pid!);
    log(`local: 100 trainings queued, then killed and started again`);
    for (let i = 0; i < 100; i++) {
      const res = await local.api('POST', '/v1/models/dreambooth/demo-trainer/versions/demo/trainings', {
        input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${receiver.base}/person.zip`, max_train_steps: 1000 },
        destination: `bench/resume-${i}`,
      });
      if (res.status !== 201) throw new Error(`POST …/trainings answered ${res.status}: ${JSON.stringify(res.json)}`);
    }
    await local.stop('SIGKILL');
    const resumed = await timedStart(dataDir);
    const count = Number(resumed.local.output().match(/resumed:\s+(\d+)/)?.[1] ?? NaN);
    await resumed.local.stop('SIGKILL');
    return { start_s: start, resume_s: resumed.seconds, resumed: count, idle_rss_mb: rss };
  } finally {
    await receiver.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Starts local mode on `dataDir`; the seconds until its first answered request. */
async function timedStart(dataDir: string): Promise<{ local: Local; seconds: number }> {
  const t0 = performance.now();
  const local = await startLocal({ dataDir, registry: 'none', config: CONFIG });
  for (;;) {
    const res = await local.api('GET', '/v1/trainings').catch(() => null);
    if (res?.status === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { local, seconds: (performance.now() - t0) / 1000 };
}

/** Resident memory of a process and every descendant (Linux /proc), in MB. */
function treeRssMb(root: number): number {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parents) if (tree.has(ppid) && !tree.has(pid)) (tree.add(pid), (grew = true));
  }
  let kb = 0;
  for (const pid of tree) {
    try {
      kb += Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? 0);
    } catch {
      // gone meanwhile
    }
  }
  return kb / 1024;
}
