/**
 * The trainer queue under a burst, in local mode: N trainings posted at once by one owner to a
 * demo trainer with two slots, then one training of another owner. Measured:
 * - run_s: one training's trainer time (metrics.predict_time) measured alone in the same run;
 * - utilisation: (N × run_s ÷ 2) ÷ the burst's makespan (first POST → last training completed,
 *   its build included): how busy the two slots were kept;
 * - fifo_inversions: pairs of the burst started (started_at) in the opposite order of creation;
 * - other_owner_wait_runs: how many run times the other owner's training waited to start.
 * To look closer: BENCH_QUEUE_DEBUG=1 logs the first starts' timeline, BENCH_QUEUE_DATA=<dir>
 * keeps local mode's data directory (its service.log) there.
 */
import { instanceDataZip } from '../infra/local/demo.ts';
import { startLocal, startReceiver, type Local } from '../test/helpers/local-mode.ts';

export interface QueueResults {
  trainings: number;
  succeeded: number;
  run_s: number;
  makespan_s: number;
  utilisation: number;
  fifo_inversions: number;
  /** Pairs created in the same millisecond (not counted as inversions). */
  fifo_ties: number;
  other_owner_wait_runs: number;
}

const CONCURRENCY = 2;
/** Steps at 100 per second: one run lasts about a second. */
const STEPS = 100;

interface Training {
  id: string;
  status: string;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  error: string | null;
  metrics?: { predict_time?: number | null };
}

export async function measureQueue(log: (l: string) => void, n = 200): Promise<QueueResults> {
  const receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(1));
  const local = await startLocal({
    ...(process.env.BENCH_QUEUE_DATA ? { dataDir: process.env.BENCH_QUEUE_DATA } : {}),
    build: 'append',
    registry: 'none',
    config: { trainers: { demo: { backend: 'demo', steps_per_second: 100, concurrency: CONCURRENCY } }, limits: { page_size: 1000 } },
  });
  try {
    const post = async (owner: string) => {
      // The Trainings API flavour: its training object shows started_at and completed_at.
      const res = await local.api('POST', '/v1/models/dreambooth/demo-trainer/versions/demo/trainings', {
        input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${receiver.base}/person.zip`, max_train_steps: STEPS },
        destination: `${owner}/queue`,
      });
      if (res.status !== 201) throw new Error(`POST …/trainings answered ${res.status}: ${JSON.stringify(res.json)}`);
      return res.json.id as string;
    };
    // A first training warms local mode up (its functions' first loads would slow the one measured).
    log('queue: a warm-up training, then one alone');
    await finished(local, [await post('bench-warm-up')], 120_000);
    const alone = (await finished(local, [await post('bench-alone')], 120_000))[0]!;
    if (alone.status !== 'succeeded') throw new Error(`the training alone ${alone.status}: ${alone.error}`);
    const run = alone.metrics?.predict_time ?? NaN;

    log(`queue: ${n} trainings at once, then one of another owner`);
    const t0 = Date.now();
    const burst = await Promise.all(Array.from({ length: n }, () => post('bench-burst')));
    const other = await post('bench-other');
    const done = await finished(local, [...burst, other], (n * run * 3 + 120) * 1000);
    const byId = new Map(done.map((t) => [t.id, t]));
    const burstDone = burst.map((id) => byId.get(id)!);
    const failed = done.filter((t) => t.status !== 'succeeded');
    if (failed.length) log(`queue: ${failed.length} did not succeed, e.g. ${failed[0]!.status}: ${failed[0]!.error}`);
    const makespan = (Math.max(...burstDone.map((t) => Date.parse(t.completed_at!))) - t0) / 1000;
    const o = byId.get(other)!;
    if (process.env.BENCH_QUEUE_DEBUG) {
      const rel = (s: string | null) => (s ? ((Date.parse(s) - t0) / 1000).toFixed(2) : '-');
      const starts = [...burstDone].sort((a, b) => Date.parse(a.started_at!) - Date.parse(b.started_at!));
      for (const t of [...starts.slice(0, 6), o]) log(`queue: ${t.id === other ? 'other' : 'burst'} created ${rel(t.created_at)} started ${rel(t.started_at)} completed ${rel(t.completed_at)}`);
    }
    for (const [a, b] of invertedPairs(burstDone).slice(0, 5)) log(`queue: inverted: ${a.id} created ${a.created_at} started ${a.started_at}, ${b.id} created ${b.created_at} started ${b.started_at}`);
    return {
      trainings: n,
      succeeded: burstDone.filter((t) => t.status === 'succeeded').length,
      run_s: run,
      makespan_s: makespan,
      utilisation: (n * run) / CONCURRENCY / makespan,
      ...((r) => ({ fifo_inversions: r.inversions, fifo_ties: r.ties }))(inversions(burstDone)),
      other_owner_wait_runs: (Date.parse(o.started_at!) - Date.parse(o.created_at)) / 1000 / run,
    };
  } finally {
    await local.stop();
    await receiver.stop();
  }
}

/**
 * Pairs started in the opposite order of their creation. Trainings created in the same
 * millisecond have no order of creation (a burst's concurrent POSTs often share one), so such
 * pairs are not counted; `ties` says how many there were.
 */
export function inversions(ts: Pick<Training, 'created_at' | 'started_at'>[]): { inversions: number; ties: number } {
  const byCreation = [...ts].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
  const created = byCreation.map((t) => Date.parse(t.created_at));
  const starts = byCreation.map((t) => Date.parse(t.started_at ?? ''));
  let count = 0;
  let ties = 0;
  for (let i = 0; i < starts.length; i++) {
    for (let j = i + 1; j < starts.length; j++) {
      if (created[i] === created[j]) ties++;
      else if (starts[i]! > starts[j]!) count++;
    }
  }
  return { inversions: count, ties };
}

function invertedPairs(ts: Training[]): [Training, Training][] {
  const out: [Training, Training][] = [];
  for (const a of ts) for (const b of ts) if (Date.parse(a.created_at) < Date.parse(b.created_at) && Date.parse(a.started_at!) > Date.parse(b.started_at!)) out.push([a, b]);
  return out;
}

async function finished(local: Local, ids: string[], timeoutMs: number): Promise<Training[]> {
  const deadline = Date.now() + timeoutMs;
  const wanted = new Set(ids);
  for (;;) {
    const page = (await local.api('GET', '/v1/trainings')).json.results as Training[];
    const mine = page.filter((t) => wanted.has(t.id));
    if (mine.length === ids.length && mine.every((t) => ['succeeded', 'failed', 'canceled'].includes(t.status))) return mine;
    if (Date.now() > deadline) throw new Error(`${mine.filter((t) => t.status === 'succeeded').length} of ${ids.length} trainings finished in time`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
