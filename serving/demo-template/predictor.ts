/**
 * The demo template: what a version of it answers, minus the GPU. Local mode serves it
 * in-process (as the demo trainer is a trainer), so the whole loop — train, version,
 * prediction, picture — runs with Node alone. It answers both contracts a version's image does:
 * Cog's synchronous `POST /predictions` (the prediction, 422 for a bad input, 409 while busy)
 * and SageMaker's `POST /invocations` as serving/sagemaker_adapter.py answers it (the same
 * prediction, a model's failure included, 400 for a body that is not `{"input": {...}}`;
 * invocations wait their turn rather than being refused).
 */
import { renderPicture } from './render.ts';
import { setTimeout as delay } from 'node:timers/promises';
import { type DemoInput, checkInput, demoTemplateOpenApi, STEP_MS } from './schema.ts';
import { type WeightsSource, weightsDigest } from './weights.ts';

export interface DemoTemplateOptions {
  /** The version's weights, baked in at start. */
  weights: WeightsSource;
  /**
   * The digest of per-request weights (`replicate_weights`, a URL). Only with it does the
   * schema offer that input; how the weights are fetched and checked is the caller's.
   */
  weightsFor?: (url: string) => Promise<string>;
  log?: (line: string) => void;
}

export interface Reply {
  status: number;
  body: unknown;
}

/** Cog's prediction object as its synchronous answer carries it. */
export interface DemoPrediction {
  id: string | null;
  input: DemoInput;
  output: string[] | null;
  logs: string;
  error: string | null;
  status: 'succeeded' | 'failed';
  started_at: string;
  completed_at: string;
  metrics: { predict_time: number };
}

export class DemoTemplate {
  private busy = false;
  private turn: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly opts: DemoTemplateOptions,
    /** The version's weights digest. */
    readonly weights: string,
  ) {}

  static async start(opts: DemoTemplateOptions): Promise<DemoTemplate> {
    return new DemoTemplate(opts, await weightsDigest(opts.weights));
  }

  health(): Reply {
    return { status: 200, body: { status: this.busy ? 'BUSY' : 'READY', setup: { status: 'succeeded' } } };
  }

  openapi(): unknown {
    return demoTemplateOpenApi(this.opts.weightsFor !== undefined);
  }

  /** Cog's `POST /predictions` (synchronous): another prediction meanwhile is refused. */
  predict(body: unknown): Promise<Reply> {
    if (this.busy) return Promise.resolve({ status: 409, body: { detail: 'Already running a prediction' } });
    return this.inTurn(() => this.run(body));
  }

  /** SageMaker's `POST /invocations`: the raw request body; one at a time, in order. */
  invoke(raw: Buffer): Promise<Reply> {
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      return Promise.resolve({ status: 400, body: { detail: `the request body is not JSON: ${(e as Error).message}` } });
    }
    const b = body as { input?: unknown; id?: unknown } | null;
    if (!b || typeof b !== 'object' || Array.isArray(b) || !isObject(b.input)) {
      return Promise.resolve({ status: 400, body: { detail: 'the request body must be a JSON object with "input", an object' } });
    }
    if (b.id != null && typeof b.id !== 'string') return Promise.resolve({ status: 400, body: { detail: '"id" must be a string' } });
    return this.inTurn(() => this.run(b));
  }

  private inTurn(task: () => Promise<Reply>): Promise<Reply> {
    const done = this.turn.then(async () => {
      this.busy = true;
      try {
        return await task();
      } finally {
        this.busy = false;
      }
    });
    this.turn = done.catch(() => undefined);
    return done;
  }

  private async run(body: unknown): Promise<Reply> {
    if (!isObject(body)) return { status: 422, body: { detail: [{ loc: ['body'], msg: 'value is not a valid dict', type: 'type_error.dict' }] } };
    const checked = checkInput(body.input ?? {}, this.opts.weightsFor !== undefined);
    if ('problems' in checked) return { status: 422, body: { detail: checked.problems } };
    const { input } = checked;
    const id = typeof body.id === 'string' ? body.id : null;
    const started = new Date();
    const p: DemoPrediction = { id, input, output: null, logs: '', error: null, status: 'succeeded', started_at: started.toISOString(), completed_at: '', metrics: { predict_time: 0 } };
    try {
      const weights = input.replicate_weights ? await this.opts.weightsFor!(input.replicate_weights) : this.weights;
      if (input.seed !== undefined) p.logs += `Using seed: ${input.seed}\n`;
      p.logs += `Weights ${weights}\n`;
      // The model's own time, which a real template spends on the GPU: the bench's predictions
      // last about a second this way, so the service's overhead is measured against a model.
      await delay(input.num_inference_steps * STEP_MS);
      p.logs += `Steps: ${input.num_inference_steps}/${input.num_inference_steps}\n`;
      p.output = Array.from({ length: input.num_outputs }, (_, index) => {
        const png = renderPicture({ weights, prompt: input.prompt, seed: input.seed, index, width: input.width, height: input.height });
        return `data:image/png;base64,${png.toString('base64')}`;
      });
      p.logs += `Rendered ${input.num_outputs} picture(s) of ${input.width}x${input.height}\n`;
    } catch (e) {
      p.status = 'failed';
      p.error = (e as Error).message;
    }
    const completed = new Date();
    p.completed_at = completed.toISOString();
    p.metrics.predict_time = (completed.getTime() - started.getTime()) / 1000;
    this.opts.log?.(`demo template: prediction ${id ?? '(no id)'} ${p.status} in ${p.metrics.predict_time}s`);
    return { status: 200, body: p };
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
