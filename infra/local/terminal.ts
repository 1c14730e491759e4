/**
 * What a person running `npm start` sees: one line per state change of each training (id,
 * model, status, elapsed), trainer and build progress, and each webhook delivery. Every
 * structured service log line also goes to <data dir>/service.log.
 */
import { appendFileSync } from 'node:fs';
import type { Store } from '#shared/store';
import type { ExecutionEvent } from './stepfunctions/executor.ts';

const time = () => new Date().toISOString().slice(11, 19);

export class Terminal {
  private readonly started = new Map<string, number>();
  private store: Store | null = null;
  private closed = false;

  constructor(
    private readonly logPath: string,
    private readonly quiet: boolean,
  ) {}

  attachStore(store: Store): void {
    this.store = store;
  }

  print(line: string): void {
    if (!this.quiet && !this.closed) process.stdout.write(`${time()}  ${line}\n`);
  }

  note(line: string): void {
    this.print(line);
  }

  trainer(line: string): void {
    this.print(line);
  }

  build(line: string): void {
    this.print(line);
  }

  serviceLog(line: string): void {
    if (this.closed) return;
    appendFileSync(this.logPath, line + '\n');
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line);
    } catch {
      return;
    }
    const id = (entry.training_id ?? entry.prediction_id) as string | undefined;
    if (entry.message === 'webhook') {
      this.print(`${id}  webhook ${String(entry.event)}: ${entry.delivered ? 'delivered' : 'not delivered'} (${String(entry.detail)})`);
    } else if (entry.message === 'webhook not delivered') {
      this.print(`${id}  webhook ${String(entry.event)}: failed, will retry (${String(entry.error)})`);
    } else if (entry.level === 'ERROR') {
      this.print(`error in ${String(entry.service)}: ${String(entry.message)} ${entry.error ? `(${String(entry.error)})` : ''}`);
    }
  }

  execution(e: ExecutionEvent): void {
    if (!this.started.has(e.name)) this.started.set(e.name, Date.now());
    const elapsed = `+${((Date.now() - this.started.get(e.name)!) / 1000).toFixed(1)}s`;
    if (e.type === 'StateEntered' && e.state) {
      void this.describe(e.name).then((d) => this.print(`${e.name}  ${d}  ${elapsed}  ${e.state}`));
    } else if (/^Execution(Succeeded|Failed|Aborted|TimedOut)$/.test(e.type) || e.status === 'INTERRUPTED') {
      void this.describe(e.name).then((d) => this.print(`${e.name}  ${d}  ${elapsed}  ${e.type.replace('Execution', 'execution ').toLowerCase()}`));
    }
  }

  private async describe(id: string): Promise<string> {
    const t = await this.store?.getTraining(id).catch(() => null);
    return t ? `${t.model}  ${t.status}` : '';
  }

  close(): void {
    this.closed = true;
  }
}
