/**
 * How a followed training is shown. On a terminal: one live line per phase (spinner, phase,
 * a step bar while the trainer reports steps, elapsed time) drawn by cli-progress, which
 * owns the redraw, cursor and terminal-width handling; each finished phase stays on screen.
 * Without a terminal (CI logs, pipes): plain lines, one per change, no colours.
 */
import cliProgress from 'cli-progress';
import { bytes, clock, type Out } from './output.ts';
import type { Steps } from './steps.ts';

export interface Reporter {
  phase(status: string): void;
  /** The trainer's steps; shown while the phase is `processing`. */
  steps(steps: Steps): void;
  /** The training ended with this status. */
  done(status: string): void;
  /** Ends the live line and draws none until resume() (a question is being asked). */
  pause(): void;
  resume(): void;
  note(text: string): void;
}

const STEP_DECILES = 10;

export class PlainReporter implements Reporter {
  private current = '';
  private decile = -1;
  private readonly t0 = Date.now();
  constructor(private readonly out: Out) {}

  private say(text: string) {
    this.out.note(`[${clock(Date.now() - this.t0)}] ${text}`);
  }

  phase(status: string) {
    if (status === this.current) return;
    this.current = status;
    this.say(status);
  }

  /** A line per tenth of the steps: a 2000-step run stays readable in a CI log. */
  steps(s: Steps) {
    if (this.current !== 'processing') return;
    const d = Math.floor((s.done / s.total) * STEP_DECILES);
    if (d === this.decile) return;
    this.decile = d;
    this.say(`processing: step ${s.done}/${s.total} (${Math.floor((s.done / s.total) * 100)}%)`);
  }

  done(status: string) {
    this.phase(status);
  }

  pause() {}

  resume() {}

  note(text: string) {
    this.say(text);
  }
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export class TtyReporter implements Reporter {
  private bar: cliProgress.SingleBar | null = null;
  private status = '';
  private since = Date.now();
  private stepsSeen: Steps | null = null;
  private ticker: NodeJS.Timeout | null = null;
  private frame = 0;
  private held = false;
  /** After done() nothing is drawn again: a late resume() (a question answered as the training ended) must not start a bar whose timer keeps the command alive. */
  private finished = false;

  constructor(private readonly out: Out) {}

  phase(status: string) {
    if (status === this.status && this.bar) return;
    if (status !== this.status) {
      this.end('ok');
      this.status = status;
      this.since = Date.now();
      this.stepsSeen = null;
    }
    this.begin();
  }

  steps(s: Steps) {
    if (this.status !== 'processing') return;
    this.stepsSeen = s;
    if (!this.bar) return;
    this.bar.setTotal(s.total);
    this.bar.update(s.done, this.payload());
  }

  done(status: string) {
    this.end(status === 'succeeded' ? 'ok' : 'bad');
    this.finished = true;
  }

  pause() {
    this.held = true;
    this.end('live');
  }

  resume() {
    this.held = false;
    this.begin();
  }

  note(text: string) {
    const live = this.bar !== null;
    this.end('live');
    this.out.note(text);
    if (live) this.begin();
  }

  /** The line a finished phase leaves: a tick, its name, its steps and how long it took. */
  private end(how: 'ok' | 'bad' | 'live') {
    if (!this.bar) return;
    const icon = { ok: this.out.style('green', '✔'), bad: this.out.style('red', '✖'), live: ' ' }[how];
    this.bar.update(this.payload(icon));
    this.bar.stop();
    this.bar = null;
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
  }

  private begin() {
    if (this.bar || !this.status || this.held || this.finished) return;
    this.bar = new cliProgress.SingleBar(
      {
        stream: this.out.stderr,
        // The step bar appears in the same line once the trainer reports steps.
        format: (options, params, payload) =>
          `${payload.icon} ${payload.phase} ${payload.steps ? `${cliProgress.Format.BarFormat(params.progress, options)} ${params.value}/${params.total} steps  ` : ''}${payload.elapsed}`,
        barsize: 30,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        gracefulExit: false,
        linewrap: false,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(this.stepsSeen?.total ?? 1, this.stepsSeen?.done ?? 0, this.payload());
    this.ticker = setInterval(() => this.bar?.update(this.payload()), 100);
    this.ticker.unref();
  }

  private payload(icon?: string) {
    return {
      icon: icon ?? this.out.style('cyan', SPINNER[this.frame++ % SPINNER.length]!),
      phase: this.out.status(this.status.padEnd(10)),
      elapsed: clock(Date.now() - this.since),
      steps: this.stepsSeen !== null,
    };
  }
}

export const reporterFor = (out: Out): Reporter => (out.tty ? new TtyReporter(out) : new PlainReporter(out));

/** Upload progress: a byte bar on a terminal, nothing in between otherwise. */
export function byteBar(out: Out, total: number, label: string): { update(sent: number): void; stop(): void } {
  if (!out.tty) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: out.stderr,
      format: `  ${label} {bar} {percentage}%  {sent}`,
      barsize: 30,
      hideCursor: true,
      gracefulExit: false,
      linewrap: false,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { sent: bytes(0) });
  return { update: (sent) => bar.update(sent, { sent: bytes(sent) }), stop: () => bar.stop() };
}
