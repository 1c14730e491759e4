/**
 * Execution records, persisted in `<dataDir>/executions.json` so DescribeExecution and
 * ListExecutions survive a restart. Executions that were running when the process died
 * cannot resume: they are closed as FAILED with error `Local.Interrupted`.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';

export const STATUSES = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'] as const;
export type ExecutionStatus = (typeof STATUSES)[number];

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
});
export type ExecutionRecord = z.infer<typeof ExecutionRecord>;
const StoreFile = z.object({ executions: z.array(ExecutionRecord) });

export const INTERRUPTED_ERROR = 'Local.Interrupted';

export class ExecutionStore {
  private readonly byArn = new Map<string, ExecutionRecord>();

  constructor(private readonly file: string) {}

  /** Loads the file; returns the executions that were running, now closed as interrupted. */
  load(): ExecutionRecord[] {
    const interrupted: ExecutionRecord[] = [];
    for (const rec of readStore(this.file)) {
      if (rec.status === 'RUNNING') {
        Object.assign(rec, {
          status: 'FAILED',
          stopDate: Date.now(),
          error: INTERRUPTED_ERROR,
          cause: 'The local server stopped while this execution was running.',
        });
        interrupted.push(rec);
      }
      this.byArn.set(rec.executionArn, rec);
    }
    if (interrupted.length) this.save();
    return interrupted;
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

  /** Closes a running execution; false when it had already ended. */
  close(executionArn: string, patch: Omit<Partial<ExecutionRecord>, 'executionArn'>): boolean {
    const rec = this.byArn.get(executionArn);
    if (rec?.status !== 'RUNNING') return false;
    Object.assign(rec, { stopDate: Date.now(), ...patch });
    this.save();
    return true;
  }

  private save(): void {
    mkdirSync(dirname(this.file), { recursive: true });
    // Write then rename, so a crash never leaves a half-written file.
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ executions: [...this.byArn.values()] }, null, 1));
    renameSync(tmp, this.file);
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
