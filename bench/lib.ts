/** Small helpers of the benchmark: timing, medians, incompressible data, zips on disk, children. */
import { spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yazl from 'yazl';

export const MiB = 1024 * 1024;

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Seconds an async step takes. */
export async function seconds(step: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await step();
  return (performance.now() - started) / 1000;
}

/** The spread of a row measured run by run: its least, median and greatest value. */
export interface Spread {
  min: number;
  median: number;
  max: number;
}

/** Each run's ratio (runs alternated, so run i of each kind saw the same load), and their spread. */
export function ratioSpread(numerators: readonly number[] | null | undefined, denominators: readonly number[] | null | undefined): Spread {
  const n = Math.min(numerators?.length ?? 0, denominators?.length ?? 0);
  const ratios = Array.from({ length: n }, (_, i) => numerators![i]! / denominators![i]!);
  return n ? { min: Math.min(...ratios), median: median(ratios), max: Math.max(...ratios) } : { min: NaN, median: NaN, max: NaN };
}

/** The spread of a row's own runs (not a ratio). */
export function spreadOf(values: readonly number[] | null | undefined): Spread {
  return values?.length ? { min: Math.min(...values), median: median([...values]), max: Math.max(...values) } : { min: NaN, median: NaN, max: NaN };
}

/** Bytes no compressor can shrink (weights are close to that), made on the fly. */
export function incompressible(bytes: number, seed = 1): Readable {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16));
  const zeros = Buffer.alloc(MiB);
  return Readable.from(
    (function* () {
      for (let left = bytes; left > 0; left -= MiB) yield cipher.update(zeros.subarray(0, Math.min(MiB, left)));
    })(),
  );
}

/**
 * A trainer-shaped output.zip on disk: model_index.json and big stored (uncompressed) weight
 * files, as Python's zipfile writes by default.
 */
export async function writeWeightsZip(path: string, files: Record<string, number>): Promise<void> {
  const z = new yazl.ZipFile();
  z.addBuffer(Buffer.from('{"_class_name": "StableDiffusionPipeline"}'), 'model_index.json');
  for (const [i, [name, size]] of Object.entries(files).entries()) z.addReadStream(incompressible(size, i + 2), name, { size, compress: false });
  z.end();
  await pipeline(z.outputStream, createWriteStream(path));
}

/** Runs a child process to its end; its last stdout line is JSON. */
export function runJsonChild<T>(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    child.on('error', reject);
    child.on('close', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.trim()}`));
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${cmd} ${args.join(' ')} printed no JSON: ${last}`));
      }
    });
  });
}

export const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
