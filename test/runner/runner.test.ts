/**
 * runner/dreambooth_runner.py by its contract, as SageMaker runs it but with DREAMBOOTH_ML_ROOT
 * in a temporary folder, against a Cog-protocol server on loopback (test/helpers/cog/server/http.py,
 * started as `python3 -m cog.server.http` exactly as the runner starts a real image's server)
 * and a real callback receiver.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import yauzl from 'yauzl';
import { ROOT } from '#test-helpers/paths';

const RUNNER = join(ROOT, 'runner', 'dreambooth_runner.py');
const INPUT = { instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', steps: 3 };

interface Result {
  code: number | null;
  stdout: string;
  failure: string | null;
  root: string;
}

let callbacks: { path: string; body: any }[] = [];
let receiver: http.Server;
let callbackBase: string;

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      callbacks.push({ path: req.url ?? '', body: JSON.parse(raw) });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"detail":"ok"}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  callbackBase = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => receiver.close(() => r())));

const roots: string[] = [];
afterEach(() => {
  callbacks = [];
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

/** Lays out /opt/ml as SageMaker does (the request channel, model/, output/) and runs the runner. */
function runRunner(
  request: Record<string, unknown>,
  opts: { files?: Record<string, Buffer>; env?: Record<string, string>; onStart?: (pid: number) => void; onOutput?: (all: string) => void } = {},
): Promise<Result> {
  const root = mkdtempSync(join(tmpdir(), 'ml-root-'));
  roots.push(root);
  const data = join(root, 'input', 'data');
  mkdirSync(join(data, 'request'), { recursive: true });
  mkdirSync(join(root, 'model'));
  mkdirSync(join(root, 'output'));
  writeFileSync(join(data, 'request', 'request.json'), JSON.stringify(request));
  for (const [path, body] of Object.entries(opts.files ?? {})) {
    mkdirSync(join(data, path, '..'), { recursive: true });
    writeFileSync(join(data, path), body);
  }
  return new Promise((resolve) => {
    const child = spawn('python3', [RUNNER], {
      env: {
        ...process.env,
        DREAMBOOTH_ML_ROOT: root,
        DREAMBOOTH_COG_COMMAND: 'python3 -m cog.server.http',
        PYTHONPATH: join(ROOT, 'test', 'helpers'),
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    const take = (c: Buffer) => {
      stdout += c;
      opts.onOutput?.(stdout);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    opts.onStart?.(child.pid!);
    child.on('close', (code) => {
      const failureFile = join(root, 'output', 'failure');
      resolve({ code, stdout, root, failure: existsSync(failureFile) ? readFileSync(failureFile, 'utf8') : null });
    });
  });
}

function zipEntries(file: string): Promise<Record<string, Buffer>> {
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true }, (err, zip) => {
      if (err || !zip) return reject(err);
      const out: Record<string, Buffer> = {};
      zip.on('entry', (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (e, s) => {
          if (e || !s) return reject(e);
          const chunks: Buffer[] = [];
          s.on('data', (c: Buffer) => chunks.push(c));
          s.on('end', () => {
            out[entry.fileName] = Buffer.concat(chunks);
            zip.readEntry();
          });
        });
      });
      zip.on('end', () => resolve(out));
      zip.readEntry();
    });
  });
}

describe('the SageMaker runner', () => {
  it('serves the input files, runs one async prediction, logs to stdout, reports progress and leaves model/output.zip', async () => {
    const images = randomBytes(200_000);
    const r = await runRunner(
      {
        id: 'db-runnertest',
        mode: 'predict',
        input: { ...INPUT, instance_data: 'request/inputs/instance_data/person.zip' },
        files: ['instance_data'],
      },
      { files: { 'request/inputs/instance_data/person.zip': images }, env: { DREAMBOOTH_CALLBACK_URL: `${callbackBase}/v1/callbacks/x?secret=s3cr3t` } },
    );
    expect(r.failure).toBeNull();
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('step 3/3');
    const entries = await zipEntries(join(r.root, 'model', 'output.zip'));
    expect(Object.keys(entries)).toEqual(expect.arrayContaining(['model_index.json', 'unet/diffusion_pytorch_model.bin']));
    // The trainer downloaded the very bytes of the input channel through the loopback URL.
    const downloads = JSON.parse(entries['inputs.json']!.toString());
    expect(downloads.instance_data).toEqual({ sha256: createHash('sha256').update(images).digest('hex'), size: images.length });
    // Progress reached the callback route, always as `processing`, and the last report holds the whole log.
    expect(callbacks.length).toBeGreaterThan(0);
    expect(callbacks.every((c) => c.path === '/v1/callbacks/x?secret=s3cr3t' && c.body.status === 'processing' && c.body.id === 'db-runnertest')).toBe(true);
    expect(callbacks.at(-1)!.body.logs).toContain('step 3/3');
    // The callback URL carries a secret: it is never printed.
    expect(r.stdout).not.toContain('s3cr3t');
  });

  it("takes the callback URL only from the job's environment, never from the request channel (every job reads every channel)", async () => {
    const r = await runRunner({ mode: 'predict', input: INPUT, callback_url: `${callbackBase}/v1/callbacks/planted?secret=x` });
    expect(r.code).toBe(0);
    expect(callbacks).toEqual([]);
  });

  it('runs the train function in train mode (--x-mode train, /trainings)', async () => {
    const r = await runRunner({ mode: 'train', input: INPUT });
    expect(r.failure).toBeNull();
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--x-mode train');
    expect(existsSync(join(r.root, 'model', 'output.zip'))).toBe(true);
  });

  it("chooses the mode from the image's cog.yaml when the configuration leaves it out", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cog-src-'));
    roots.push(dir);
    const trainable = join(dir, 'trainable.yaml');
    writeFileSync(trainable, 'build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\ntrain: "train.py:train"\n');
    const plain = join(dir, 'plain.yaml');
    writeFileSync(plain, 'build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n# train: later\n');
    const train = await runRunner({ mode: 'auto', input: INPUT }, { env: { DREAMBOOTH_COG_CONFIG: trainable } });
    expect(train.code).toBe(0);
    expect(train.stdout).toContain('declares a train function: train mode');
    expect(train.stdout).toContain('--x-mode train');
    const predict = await runRunner({ input: INPUT }, { env: { DREAMBOOTH_COG_CONFIG: plain } });
    expect(predict.code).toBe(0);
    expect(predict.stdout).toContain('declares no train function: predict mode');
    expect(predict.stdout).not.toContain('--x-mode train');
  });

  it("writes the trainer's own error to output/failure and exits non-zero", async () => {
    const r = await runRunner({ mode: 'predict', input: { ...INPUT, fail_with: 'CUDA out of memory. Tried to allocate 2.00 GiB' } });
    expect(r.code).not.toBe(0);
    expect(r.failure).toBe('CUDA out of memory. Tried to allocate 2.00 GiB');
    expect(existsSync(join(r.root, 'model', 'output.zip'))).toBe(false);
  });

  it('fails with the setup logs when the Cog setup fails', async () => {
    const r = await runRunner({ mode: 'predict', input: INPUT }, { env: { FAKE_COG_SETUP: 'fail' } });
    expect(r.code).not.toBe(0);
    expect(r.failure).toContain("the trainer's setup failed");
    expect(r.failure).toContain('RuntimeError: weights not found');
  });

  it("fails with the trainer's validation detail when it refuses the input", async () => {
    const r = await runRunner({ mode: 'predict', input: { class_prompt: 'x' } });
    expect(r.code).not.toBe(0);
    expect(r.failure).toBe('the trainer refused the input: instance_prompt: field required');
  });

  it('fails when the trainer succeeds without uploading an output', async () => {
    const r = await runRunner({ mode: 'predict', input: { ...INPUT, no_upload: true } });
    expect(r.code).not.toBe(0);
    expect(r.failure).toContain('uploaded 0 files');
  });

  it('fails before starting anything when a declared file input is missing', async () => {
    const r = await runRunner({ mode: 'predict', input: { ...INPUT, instance_data: 'request/inputs/nope.zip' }, files: ['instance_data'] });
    expect(r.code).not.toBe(0);
    expect(r.failure).toContain("input instance_data names 'request/inputs/nope.zip'");
    expect(r.stdout).not.toContain('starting the Cog server');
  });

  it('cancels the run on SIGTERM (a stopped job) and says so', async () => {
    let pid = 0;
    let running: () => void;
    const predicting = new Promise<void>((r) => (running = r));
    const started = Date.now();
    const done = runRunner(
      { mode: 'predict', input: { ...INPUT, steps: 1000, step_seconds: 0.05 } },
      // Once the prediction runs, the runner's SIGTERM handler is in place.
      { onStart: (p) => (pid = p), onOutput: (all) => /prediction \S+ started/.test(all) && running() },
    );
    await predicting;
    process.kill(pid, 'SIGTERM');
    const r = await done;
    expect(r.code).not.toBe(0);
    expect(r.failure).toBe('the job was stopped (SIGTERM) while the trainer ran');
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
