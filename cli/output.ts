/** How the command line writes: colours only on a terminal, tables for people, JSON for scripts. */
import { styleText } from 'node:util';

type Style = Parameters<typeof styleText>[0];

/** Colours on a terminal that wants them (NO_COLOR, FORCE_COLOR as everywhere). */
export function colours(stream: NodeJS.WriteStream): boolean {
  if (process.env.NO_COLOR) return false;
  if (process.env.FORCE_COLOR && process.env.FORCE_COLOR !== '0') return true;
  return Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
}

export class Out {
  readonly tty: boolean;
  private readonly colour: boolean;
  constructor(
    readonly stdout: NodeJS.WriteStream = process.stdout,
    readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = Boolean(stderr.isTTY);
    this.colour = colours(stderr);
  }

  /** Results: what a script may want to capture. */
  line(text = ''): void {
    this.stdout.write(text + '\n');
  }

  /** Progress and notes, beside the results. */
  note(text: string): void {
    this.stderr.write(text + '\n');
  }

  error(text: string): void {
    this.stderr.write(`${this.style('red', 'error:')} ${text}\n`);
  }

  json(value: unknown): void {
    this.stdout.write(JSON.stringify(value, null, 2) + '\n');
  }

  style(style: Style, text: string): string {
    // colours() has decided; styleText's own check would drop them wherever CI is set, even on a terminal.
    return this.colour ? styleText(style, text, { validateStream: false }) : text;
  }

  status(status: string): string {
    const s: Record<string, Style> = { succeeded: 'green', failed: 'red', canceled: 'yellow', processing: 'cyan', pushing: 'magenta' };
    return s[status] ? this.style(s[status], status) : status;
  }

  /**
   * Aligned columns under a header, written by hand: a dozen lines, where table libraries
   * bring box borders that get in the way of `grep` and `cut`.
   */
  table(headers: string[], rows: (string | null | undefined)[][]): void {
    const cells = rows.map((r) => r.map((c) => c ?? ''));
    const width = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => visible(r[i]!).length)));
    const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(width[i]! - visible(c).length))).join('  ');
    this.line(this.style('bold', fmt(headers)));
    for (const r of cells) this.line(fmt(r));
    if (rows.length === 0) this.note('(none)');
  }
}

const visible = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');

/** `1:05`, `1:02:03`. */
export function clock(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60));
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${mm.padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) [v, u] = [v / 1024, u + 1];
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** `2026-12-01 15:40` in local time: enough to tell trainings apart. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
