/**
 * The demo trainer: a stand-in for replicate/dreambooth that speaks Cog's HTTP prediction
 * protocol, so the real `cog` backend drives it. It does what the real trainer does, minus
 * the GPU: downloads `instance_data` (a zip with at least one image, or it fails the same way),
 * advances through `max_train_steps` at `stepsPerSecond` with progress in its logs, honours
 * cancel, uploads an `output.zip` shaped like the real one (diffusers layout, small files) — or,
 * with `output_format: 'lora'`, a single `lora.safetensors` (lora.ts) — to its `--upload-url`, and reports like Cog 0.9 (start as `processing`, cumulative logs,
 * terminal webhook retried).
 */
import yauzl from 'yauzl';
import { request } from '#shared/http';
import { validate } from './input.ts';
import { outputFile, type OutputFile } from './outputs.ts';

export { outputZip } from './outputs.ts';

export interface DemoOptions {
  stepsPerSecond: number;
  /** Where output files are PUT (`<uploadUrl><filename>`), as Cog's `--upload-url`. */
  uploadUrl: string;
  /** Egress allow-list for instance_data and webhooks. */
  allow: string[];
  log?: (line: string) => void;
  /**
   * A run this server had when its process died (local mode keeps it on disk): health answers
   * BUSY for it, so the trainer's check (a PUT of that id, with fresh input and callback)
   * starts it again, once. Only the training holding this server's slot PUTs here: a PUT of
   * another id means that training has let the slot go, and the debt with it.
   */
  owed?: string | null;
  /** Told the id of the run that starts (and null when it ends), for keeping it on disk. */
  onRun?: (id: string | null) => void;
}

export interface Prediction {
  id: string;
  input: Record<string, unknown>;
  webhook: string | null;
  status: 'processing' | 'succeeded' | 'failed' | 'canceled';
  logs: string;
  output: string | null;
  error: string | null;
  created_at: string;
  started_at: string;
  completed_at: string | null;
  metrics: { predict_time?: number };
  canceled: boolean;
}

export interface Reply {
  status: number;
  body: unknown;
}

const IMAGE = /\.(png|jpe?g|webp|gif|bmp)$/i;

export class DemoTrainer {
  private current: Prediction | null = null;
  private owed: string | null;

  constructor(private readonly opts: DemoOptions) {
    this.owed = opts.owed ?? null;
  }

  health(): Reply {
    return { status: 200, body: { status: this.current || this.owed ? 'BUSY' : 'READY', setup: { status: 'succeeded' } } };
  }

  put(id: string, body: { input?: Record<string, unknown>; webhook?: string }): Reply {
    if (this.current) {
      if (this.current.id === id) return { status: 202, body: publicView(this.current) };
      return { status: 409, body: { detail: 'Already running a prediction' } };
    }
    const problems = validate(body.input ?? {});
    // As Cog (pydantic) does: a webhook that is present must be a URL.
    if (body.webhook !== undefined && !(typeof body.webhook === 'string' && URL.canParse(body.webhook))) {
      problems.push({ loc: ['body', 'webhook'], msg: 'invalid or missing URL scheme', type: 'value_error.url.scheme' });
    }
    if (problems.length) return { status: 422, body: { detail: problems } };
    const p = newPrediction(id, body.input ?? {}, body.webhook ?? null);
    this.current = p;
    this.owed = null;
    this.opts.onRun?.(id);
    void this.run(p);
    return { status: 202, body: publicView(p) };
  }

  cancel(id: string): Reply {
    if (this.owed === id) {
      this.owed = null;
      this.opts.onRun?.(null);
      return { status: 200, body: {} };
    }
    if (!this.current || this.current.id !== id) return { status: 404, body: { detail: 'Prediction not found' } };
    this.current.canceled = true;
    return { status: 200, body: {} };
  }

  private async run(p: Prediction): Promise<void> {
    await runDemo(p, {
      stepsPerSecond: this.opts.stepsPerSecond,
      allow: this.opts.allow,
      log: this.opts.log,
      upload: (id, file) => uploadToCog(this.opts.uploadUrl, this.opts.allow, id, file),
      isCanceled: () => p.canceled,
    });
    this.current = null;
    this.opts.onRun?.(null);
  }
}

export interface RunHooks {
  stepsPerSecond: number;
  allow: string[];
  log?: (line: string) => void;
  /** Stores the output (output.zip, or lora.safetensors) and answers the URL the pipeline fetches it from. */
  upload: (id: string, file: OutputFile) => Promise<string>;
  isCanceled: () => boolean | Promise<boolean>;
  /** Called after each webhook-worthy change (progress, terminal). */
  onChange?: (p: Prediction) => Promise<void>;
}

/** One demo training, start to terminal webhook; used by the local server and the AWS worker. */
export async function runDemo(p: Prediction, hooks: RunHooks): Promise<Prediction> {
  const started = Date.now();
  const say = (line: string) => {
    p.logs += line + '\n';
    hooks.log?.(`demo trainer ${p.id}: ${line}`);
  };
  try {
    await send(p, false, hooks.allow);
    say('Downloading instance_data');
    say(`Found ${await fetchImages(String(p.input.instance_data), hooks.allow)} instance image(s)`);
    const steps = Number(p.input.max_train_steps ?? 2000);
    const perStep = 1000 / hooks.stepsPerSecond;
    const every = Math.max(1, Math.round(hooks.stepsPerSecond));
    let lastLog = 0;
    for (let step = 1; step <= steps; step++) {
      await sleep(perStep);
      if (step % every !== 0 && step !== steps) continue;
      if (await hooks.isCanceled()) break;
      say(`Steps: ${step}/${steps} loss=${(0.2 / Math.sqrt(step)).toFixed(4)}`);
      if (Date.now() - lastLog > 1000) {
        lastLog = Date.now();
        await send(p, false, hooks.allow).catch(() => undefined);
        await hooks.onChange?.(p);
      }
    }
    if (await hooks.isCanceled()) {
      p.status = 'canceled';
    } else {
      p.output = await hooks.upload(p.id, await outputFile(p.input, say));
      p.status = 'succeeded';
    }
  } catch (e) {
    p.status = 'failed';
    p.error = (e as Error).message;
    say(`Error: ${p.error}`);
  }
  p.completed_at = new Date().toISOString();
  p.metrics.predict_time = (Date.now() - started) / 1000;
  await hooks.onChange?.(p);
  await send(p, true, hooks.allow);
  return p;
}

export function newPrediction(id: string, input: Record<string, unknown>, webhook: string | null): Prediction {
  const now = new Date().toISOString();
  return {
    id,
    input,
    webhook,
    status: 'processing',
    logs: '',
    output: null,
    error: null,
    created_at: now,
    started_at: now,
    completed_at: null,
    metrics: {},
    canceled: false,
  };
}

export function publicView(p: Prediction) {
  const { canceled: _c, ...rest } = p;
  return rest;
}

async function fetchImages(url: string, allow: string[]): Promise<number> {
  const res = await request(url, { method: 'GET', allow, maxRedirects: 3, timeoutMs: 30_000, maxResponseBytes: 512 * 1024 * 1024 }).catch(
    (e: Error) => {
      throw new Error(`could not download instance_data: ${e.message}`);
    },
  );
  if (res.status !== 200) throw new Error(`could not download instance_data: HTTP ${res.status}`);
  const names = await zipNames(res.body).catch(() => {
    throw new Error('instance_data is not a zip archive');
  });
  const images = names.filter((n) => IMAGE.test(n) && !n.startsWith('__MACOSX/')).length;
  if (images === 0) throw new Error('instance_data holds no images (png, jpg, webp, gif, bmp)');
  return images;
}

/** Like Cog with `--upload-url`: PUT the file, report the response's Location (query stripped). */
async function uploadToCog(uploadUrl: string, allow: string[], id: string, file: OutputFile): Promise<string> {
  const url = `${uploadUrl}${file.name}`;
  const res = await request(url, {
    method: 'PUT',
    headers: { 'content-type': file.contentType, 'x-prediction-id': id },
    body: file.body,
    allow,
    timeoutMs: 60_000,
  });
  if (res.status >= 300) throw new Error(`upload of ${file.name} failed: HTTP ${res.status}`);
  const location = res.headers.location;
  return typeof location === 'string' ? location.split('?')[0]! : url.split('?')[0]!;
}

/** Cog retries terminal webhooks (about 12 tries, doubling from 0.2 s); others are sent once. */
async function send(p: Prediction, terminal: boolean, allow: string[]): Promise<void> {
  if (!p.webhook) return;
  const body = JSON.stringify(publicView(p));
  const tries = terminal ? 12 : 1;
  for (let i = 0; i < tries; i++) {
    try {
      const res = await request(p.webhook, { method: 'POST', headers: { 'content-type': 'application/json' }, body, allow, timeoutMs: 10_000 });
      if (res.status < 500) return;
    } catch {
      /* retried below */
    }
    if (i < tries - 1) await sleep(Math.min(200 * 2 ** i, 10_000));
  }
}

function zipNames(buf: Buffer): Promise<string[]> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(buf, { lazyEntries: true }, (err, zip) => {
      if (err || !zip) return reject(err);
      const names: string[] = [];
      zip.on('entry', (e: yauzl.Entry) => {
        names.push(e.fileName);
        zip.readEntry();
      });
      zip.on('end', () => resolve(names));
      zip.on('error', reject);
      zip.readEntry();
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
