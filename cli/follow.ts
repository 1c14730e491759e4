/**
 * Following a training to its end: its phase, elapsed time and the trainer's steps, polled
 * from `GET /v1/trainings/{id}`. Ctrl-C asks whether to cancel the training (or cancels it
 * with --cancel-on-interrupt; without a terminal to ask on, leaves it running).
 */
import { createInterface } from 'node:readline';
import { NetworkError, type Client } from './client.ts';
import type { Out } from './output.ts';
import { reporterFor, type Reporter } from './progress.ts';
import { parseSteps } from './steps.ts';

export interface Training {
  id: string;
  status: string;
  model?: string;
  destination?: string;
  version?: string | null;
  output?: { version?: string } | null;
  error?: string | null;
  logs?: string | null;
  created_at?: string;
  [k: string]: unknown;
}

export const TERMINAL = new Set(['succeeded', 'failed', 'canceled', 'aborted']);

export interface FollowOptions {
  client: Client;
  out: Out;
  training: Training;
  cancelOnInterrupt: boolean;
  pollMs?: number;
}

/** Several misses in a row before giving up: a restarting API or a flaky link should not end a long wait. */
const MAX_MISSES = 6;

export async function follow(o: FollowOptions): Promise<Training> {
  const reporter = reporterFor(o.out);
  const interrupt = new Interrupts(o, reporter);
  let t = o.training;
  let misses = 0;
  try {
    for (;;) {
      show(reporter, t);
      if (TERMINAL.has(t.status)) break;
      await interrupt.sleep(o.pollMs ?? 500);
      try {
        t = await o.client.get<Training>(`/v1/trainings/${t.id}`);
        misses = 0;
      } catch (e) {
        if (!(e instanceof NetworkError) || ++misses >= MAX_MISSES) throw e;
        reporter.note(`${e.message}; retrying`);
        await interrupt.sleep(1000 * 2 ** misses);
      }
    }
    reporter.done(t.status);
    return t;
  } finally {
    reporter.pause();
    interrupt.close();
  }
}

function show(reporter: Reporter, t: Training) {
  const steps = parseSteps(t.logs);
  // Steps count for the processing line only, which also takes the final count a poll brings
  // with the next phase.
  if (steps) reporter.steps(steps);
  if (TERMINAL.has(t.status)) return;
  reporter.phase(t.status);
  if (steps) reporter.steps(steps);
}

class Interrupts {
  private asking = false;
  private canceled = false;
  /** The training ended: an answer that comes after it changes nothing on the screen. */
  private closed = false;
  private wake: (() => void) | null = null;
  private readonly onSigint = () => void this.interrupted();

  constructor(
    private readonly o: FollowOptions,
    private readonly reporter: Reporter,
  ) {
    process.on('SIGINT', this.onSigint);
  }

  close() {
    this.closed = true;
    process.off('SIGINT', this.onSigint);
  }

  /** A wait that a cancel cuts short, so its outcome shows at once. */
  sleep(ms: number) {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => (clearTimeout(timer), resolve());
    });
  }

  private async interrupted() {
    const id = this.o.training.id;
    if (this.asking || this.canceled) return;
    if (this.o.cancelOnInterrupt) return this.cancel();
    if (!process.stdin.isTTY) return this.leave();
    this.asking = true;
    this.reporter.pause();
    const answer = await ask(`Cancel training ${id}? [y/N] `, this.o.out.stderr);
    this.asking = false;
    if (answer === null) return this.leave();
    if (/^y(es)?$/i.test(answer.trim())) await this.cancel();
    else if (!this.closed) this.reporter.note(`still following ${id} (Ctrl-C again to cancel or leave)`);
    if (!this.closed) this.reporter.resume();
  }

  private async cancel() {
    this.canceled = true;
    this.reporter.note(`canceling training ${this.o.training.id}…`);
    try {
      await this.o.client.post(`/v1/trainings/${this.o.training.id}/cancel`);
    } catch (e) {
      this.reporter.note(`the cancel failed: ${(e as Error).message}`);
      this.canceled = false;
    }
    this.wake?.();
  }

  /** The training goes on; the person gets their shell back and the way to look again. */
  private leave(): never {
    const id = this.o.training.id;
    this.reporter.pause();
    this.o.out.note(`left training ${id} running: \`dreambooth logs ${id} --follow\` to watch, \`dreambooth cancel ${id}\` to stop it`);
    process.exit(130);
  }
}

/** One line from the terminal; null when the person presses Ctrl-C again (or input ends). */
function ask(question: string, output: NodeJS.WriteStream): Promise<string | null> {
  return new Promise((resolve) => {
    (process.stdin as NodeJS.ReadStream & { ref?: () => void }).ref?.();
    const rl = createInterface({ input: process.stdin, output, terminal: true });
    let done = false;
    const finish = (v: string | null) => {
      if (done) return;
      done = true;
      rl.close();
      // A paused terminal handle is still referenced (seen on Node 22): the command's end must
      // not wait on a question already answered.
      (process.stdin as NodeJS.ReadStream & { unref?: () => void }).unref?.();
      if (v === null) output.write('\n');
      resolve(v);
    };
    rl.on('SIGINT', () => finish(null));
    rl.on('close', () => finish(null));
    rl.question(question, (a) => finish(a));
  });
}
