/**
 * Predictions in local mode, on a version the demo trainer trained, served by local mode's
 * stand-in for SageMaker asynchronous inference (the demo template in-process, two instances).
 * Measured:
 * - overhead_s: the median, over sequential predictions on a warm endpoint, of (created_at →
 *   completed_at) minus the model's own metrics.predict_time: what the service adds (the
 *   state machine, its functions, S3, the queue, the notification);
 * - burst utilisation: N predictions posted at once: (N × one prediction alone ÷ instances) ÷
 *   makespan (first POST → last completed_at): how busy the instances were kept.
 * Each prediction renders `num_inference_steps` steps so that one lasts about RUN_S seconds.
 */
import { instanceDataZip } from '../infra/local/demo.ts';
import { startLocal, startReceiver, type Local } from '../test/helpers/local-mode.ts';
import { median } from './lib.ts';

export interface PredictResults {
  sequential: number;
  burst: number;
  instances: number;
  /** One prediction's own predict_time, measured alone in the same run. */
  run_s: number;
  overhead_s: number;
  overheads: number[];
  makespan_s: number;
  burst_succeeded: number;
  utilisation: number;
}

const INSTANCES = 2;
/** The demo template's steps for about a second of model time (serving/demo-template). */
export const STEPS = 100;

export interface Prediction {
  id: string;
  status: string;
  created_at: string;
  completed_at: string | null;
  error: string | null;
  metrics?: { predict_time?: number };
  output?: unknown;
}

export const TERMINAL = ['succeeded', 'failed', 'canceled'];

export async function measurePredictions(log: (l: string) => void, sequential = 20, burst = 100): Promise<PredictResults> {
  const receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(1));
  const local = await startLocal({
    build: 'append',
    registry: 'none',
    config: { trainers: { demo: { backend: 'demo', steps_per_second: 100 } }, serving: { max_instances: INSTANCES }, limits: { page_size: 1000 } },
  });
  try {
    const version = await trainVersion(local, receiver.base);
    const predict = async (prompt: string) => {
      const res = await local.api('POST', '/v1/predictions', { version, input: { prompt, num_inference_steps: STEPS } });
      if (res.status !== 201) throw new Error(`POST /v1/predictions answered ${res.status}: ${JSON.stringify(res.json)}`);
      return res.json.id as string;
    };
    log('predict: a warm-up prediction (makes the endpoint), then one alone');
    await finished(local, [await predict('warm-up')], 300_000);
    const alone = (await finished(local, [await predict('alone')], 120_000))[0]!;
    if (alone.status !== 'succeeded') throw new Error(`the prediction alone ${alone.status}: ${alone.error}`);
    const run = alone.metrics?.predict_time ?? NaN;

    log(`predict: ${sequential} sequential predictions`);
    const overheads: number[] = [];
    for (let i = 0; i < sequential; i++) {
      const [p] = await finished(local, [await predict(`sequential ${i}`)], 120_000);
      if (p!.status !== 'succeeded') throw new Error(`sequential prediction ${p!.status}: ${p!.error}`);
      overheads.push((Date.parse(p!.completed_at!) - Date.parse(p!.created_at)) / 1000 - (p!.metrics?.predict_time ?? NaN));
    }

    log(`predict: ${burst} predictions at once on ${INSTANCES} instances`);
    const t0 = Date.now();
    const ids = await Promise.all(Array.from({ length: burst }, (_, i) => predict(`burst ${i}`)));
    const done = await finished(local, ids, (burst * run * 3 + 300) * 1000);
    const failed = done.filter((p) => p.status !== 'succeeded');
    if (failed.length) log(`predict: ${failed.length} did not succeed, e.g. ${failed[0]!.status}: ${failed[0]!.error}`);
    const makespan = (Math.max(...done.map((p) => Date.parse(p.completed_at!))) - t0) / 1000;
    return {
      sequential,
      burst,
      instances: INSTANCES,
      run_s: run,
      overhead_s: median(overheads),
      overheads,
      makespan_s: makespan,
      burst_succeeded: done.length - failed.length,
      utilisation: (burst * run) / INSTANCES / makespan,
    };
  } finally {
    await local.stop();
    await receiver.stop();
  }
}

/** Trains a version with the demo trainer; its `owner/name:version`. */
async function trainVersion(local: Local, base: string): Promise<string> {
  const res = await local.api('POST', '/v1/models/dreambooth/demo-trainer/versions/demo/trainings', {
    input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${base}/person.zip`, max_train_steps: 10 },
    destination: 'bench/predict',
  });
  if (res.status !== 201) throw new Error(`POST …/trainings answered ${res.status}: ${JSON.stringify(res.json)}`);
  for (;;) {
    const t = (await local.api('GET', `/v1/trainings/${res.json.id}`)).json;
    if (t.status === 'succeeded') return t.output.version as string;
    if (TERMINAL.includes(t.status)) throw new Error(`the training ${t.status}: ${t.error}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Polls each prediction until it is terminal (a bench may poll; a test waits for events). */
export async function finished(local: Local, ids: string[], timeoutMs: number): Promise<Prediction[]> {
  const deadline = Date.now() + timeoutMs;
  const done = new Map<string, Prediction>();
  for (;;) {
    for (const id of ids.filter((i) => !done.has(i))) {
      const p = (await local.api('GET', `/v1/predictions/${id}`)).json as Prediction;
      if (TERMINAL.includes(p.status)) done.set(id, p);
    }
    if (done.size === ids.length) return ids.map((id) => done.get(id)!);
    if (Date.now() > deadline) throw new Error(`${done.size} of ${ids.length} predictions finished in time`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
