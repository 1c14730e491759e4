/**
 * A weights version's first prediction (issue 26): in local mode, versions trained by the demo
 * trainer (`output_format: 'lora'`) on demo-lora, served by one endpoint for the template (local
 * mode's stand-in for SageMaker asynchronous inference, the demo template in-process). An earlier
 * version of the template runs a prediction first, so the endpoint is warm; then, run by run, a new
 * version is trained and, as soon as the bench sees it recorded, its first prediction is posted.
 * Measured: the version recorded (its created_at, the record step's clock) → that
 * prediction's output (its completed_at), against the model's own metrics.predict_time (which
 * includes the demo template fetching the version's weights by their URL). The bench polls the
 * training every 50 ms: that lag is in the number, as a client's would be.
 */
import { instanceDataZip } from '../infra/local/demo.ts';
import { startLocal, startReceiver, type Local } from '../test/helpers/local-mode.ts';
import { finished, STEPS, TERMINAL } from './predict.ts';

export interface FirstPredictionResults {
  /** The demo template's own time for STEPS steps (STEP_MS each), before any overhead. */
  steps: number;
  /** Version recorded → first prediction's output, run by run. */
  first: number[];
  /** That prediction's metrics.predict_time, run by run. */
  predict: number[];
  /** Version recorded → the bench's POST of the prediction (its polling lag), run by run. */
  posted_after: number[];
}

const TEMPLATE = 'demo-lora';

export async function measureFirstPredictions(reps: number, log: (l: string) => void): Promise<FirstPredictionResults> {
  const receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(1));
  const local = await startLocal({ build: 'append', registry: 'none', config: { trainers: { demo: { backend: 'demo', steps_per_second: 100 } } } });
  try {
    const predict = async (version: string, prompt: string) => {
      const res = await local.api('POST', '/v1/predictions', { version, input: { prompt, num_inference_steps: STEPS } });
      if (res.status !== 201) throw new Error(`POST /v1/predictions answered ${res.status}: ${JSON.stringify(res.json)}`);
      return res.json.id as string;
    };
    log('first prediction: an earlier version of demo-lora and its prediction (make the endpoint warm)');
    const earlier = await trainLora(local, receiver.base, 'bench/lora-warm');
    const [warm] = await finished(local, [await predict(earlier, 'warm-up')], 300_000);
    if (warm!.status !== 'succeeded') throw new Error(`the warm-up prediction ${warm!.status}: ${warm!.error}`);
    const out: FirstPredictionResults = { steps: STEPS, first: [], predict: [], posted_after: [] };
    for (let i = 0; i < reps; i++) {
      const v = await trainLora(local, receiver.base, `bench/lora-${i}`);
      const posted = Date.now();
      const id = await predict(v, `first ${i}`);
      // The seed's training object has no completed_at: the version's created_at is the record step's clock.
      const recorded = Date.parse((await local.api('GET', `/v1/models/${v.replace(':', '/versions/')}`)).json.created_at);
      const [p] = await finished(local, [id], 120_000);
      if (p!.status !== 'succeeded') throw new Error(`the first prediction of run ${i + 1} ${p!.status}: ${p!.error}`);
      out.first.push((Date.parse(p!.completed_at!) - recorded) / 1000);
      out.predict.push(p!.metrics?.predict_time ?? NaN);
      out.posted_after.push((posted - recorded) / 1000);
      log(`first prediction: run ${i + 1}/${reps}: ${out.first.at(-1)} s after the version, predict_time ${out.predict.at(-1)} s`);
    }
    return out;
  } finally {
    await local.stop();
    await receiver.stop();
  }
}

/** A new version of `model` on demo-lora (no build); its `owner/name:version`. */
async function trainLora(local: Local, base: string, model: string): Promise<string> {
  const res = await local.api('POST', '/v1/trainings', {
    input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${base}/person.zip`, max_train_steps: 5, output_format: 'lora' },
    trainer_version: 'demo',
    template_version: TEMPLATE,
    model,
  });
  if (res.status !== 201) throw new Error(`POST /v1/trainings answered ${res.status}: ${JSON.stringify(res.json)}`);
  for (;;) {
    const t = (await local.api('GET', `/v1/trainings/${res.json.id}`)).json;
    if (t.status === 'succeeded') return `${model}:${t.version}`;
    if (TERMINAL.includes(t.status)) throw new Error(`the training ${t.status}: ${t.error}`);
    // A client learns of the version by polling (or its webhook): poll often, the lag is counted.
    await new Promise((r) => setTimeout(r, 50));
  }
}
