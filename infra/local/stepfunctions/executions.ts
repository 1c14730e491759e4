/**
 * Execution records, persisted in `<dataDir>/executions.json` so DescribeExecution and
 * ListExecutions survive a restart, and each running execution's position — the state it
 * entered last and that state's input, what Step Functions' history holds for a redrive — so a
 * restart resumes it. Positions change at every transition: they are appended to
 * `executions.journal` (one line each) rather than rewriting the file, and folded into it
 * whenever the file is written.
 */
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';

export const STATUSES = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'] as const;
export type ExecutionStatus = (typeof STATUSES)[number];

const Position = z.object({ state: z.string(), input: z.string() });
export type Position = z.infer<typeof Position>;

const ExecutionRecord = z.object({
  executionArn: z.string(),
  stateMachineArn: z.string(),
  name: z.string(),
  input: z.string(),
  status: z.enum(STATUSES),
  /** Epoch milliseconds. */
  startDate: z.number(),
  stopDate: z.number().optional(),
  output: z.string().optional(),
  error: z.string().optional(),
  cause: z.string().optional(),
  /** While RUNNING: the state entered last and its input (JSON); absent before the first state. */
  position: Position.optional(),
});
export type ExecutionRecord = z.infer<typeof ExecutionRecord>;
const StoreFile = z.object({ executions: z.array(ExecutionRecord) });
const JournalLine = z.object({ arn: z.string(), state: z.string(), input: z.string() });

export const INTERRUPTED_ERROR = 'Local.Interrupted';

export class ExecutionStore {
  private readonly byArn = new Map<string, ExecutionRecord>();
  private readonly journal: string;

  constructor(private readonly file: string) {
    this.journal = file.replace(/\.json$/, '') + '.journal';
  }

  /** Loads the file and the journal; returns the executions that were running (to resume). */
  load(): ExecutionRecord[] {
    for (const rec of readStore(this.file)) this.byArn.set(rec.executionArn, rec);
    const replayed = this.replayJournal();
    const running = [...this.byArn.values()].filter((r) => r.status === 'RUNNING');
    if (replayed) this.save();
    return running;
  }

  get(executionArn: string): ExecutionRecord | undefined {
    return this.byArn.get(executionArn);
  }

  /** Newest first. */
  list(): ExecutionRecord[] {
    return [...this.byArn.values()].reverse().sort((a, b) => b.startDate - a.startDate);
  }

  put(rec: ExecutionRecord): void {
    this.byArn.set(rec.executionArn, rec);
    this.save();
  }

  /** Records where a running execution is: one journal line, no rewrite. */
  move(executionArn: string, position: Position): void {
    const rec = this.byArn.get(executionArn);
    if (rec?.status !== 'RUNNING') return;
    rec.position = position;
    mkdirSync(dirname(this.file), { recursive: true });
    appendFileSync(this.journal, `${JSON.stringify({ arn: executionArn, ...position })}\n`);
  }

  /** Points the positions that name URL `from` at `to` (a server that moved); how many. */
  retarget(from: string, to: string): number {
    // Not a longer port that starts with the same digits.
    const url = new RegExp(`${from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![0-9])`, 'g');
    let n = 0;
    for (const rec of this.byArn.values()) {
      const input = rec.position?.input.replace(url, to);
      if (rec.status !== 'RUNNING' || !rec.position || input === rec.position.input) continue;
      this.move(rec.executionArn, { state: rec.position.state, input: input! });
      n++;
    }
    return n;
  }

  /** Closes a running execution; false when it had already ended. */
  close(executionArn: string, patch: Omit<Partial<ExecutionRecord>, 'executionArn'>): boolean {
    const rec = this.byArn.get(executionArn);
    if (rec?.status !== 'RUNNING') return false;
    Object.assign(rec, { stopDate: Date.now(), ...patch });
    delete rec.position;
    this.save();
    return true;
  }

  private save(): void {
    mkdirSync(dirname(this.file), { recursive: true });
    // Write then rename, so a crash never leaves a half-written file. The journal is emptied
    // after: a crash in between replays lines the file already holds, which changes nothing.
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ executions: [...this.byArn.values()] }, null, 1));
    renameSync(tmp, this.file);
    writeFileSync(this.journal, '');
  }

  /** Applies the journal's positions; whether it had any. A torn last line (a crash mid-write) is skipped. */
  private replayJournal(): boolean {
    let text: string;
    try {
      text = readFileSync(this.journal, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      let parsed: z.infer<typeof JournalLine>;
      try {
        parsed = JournalLine.parse(JSON.parse(line));
      } catch {
        continue;
      }
      const rec = this.byArn.get(parsed.arn);
      if (rec?.status === 'RUNNING') rec.position = { state: parsed.state, input: parsed.input };
    }
    return text.length > 0;
  }
}

function readStore(file: string): ExecutionRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return StoreFile.parse(JSON.parse(text)).executions;
}
