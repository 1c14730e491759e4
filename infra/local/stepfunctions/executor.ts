/**
 * Executions of one local state machine, run by aws-local-stepfunctions. Each machine of the
 * template has one; they share the execution store and the task tokens. Everything the Step
 * Functions endpoint answers comes from here.
 */
import './polyfill.ts';
import { randomBytes } from 'node:crypto';
import { ExecutionAbortedError, ExecutionError, ExecutionTimeoutError, StateMachine } from 'aws-local-stepfunctions';
import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import { AwsError } from '../errors.ts';
import { INTERRUPTED_ERROR, type ExecutionRecord, type ExecutionStatus, type ExecutionStore } from './executions.ts';
import { redriveOf } from './resume.ts';
import { findTaskStates, localTaskHandlers, type TaskHandler } from './tasks.ts';
import type { TaskTokens } from './tokens.ts';

export interface ExecutionEvent {
  executionArn: string;
  name: string;
  /** RUNNING for state events; INTERRUPTED for executions a restart found running. */
  status: ExecutionStatus | 'INTERRUPTED';
  /** The executor's event type, e.g. StateEntered, StateFailed, ExecutionFailed. */
  type: string;
  state?: string;
  error?: string;
  cause?: string;
}

export interface LocalStepFunctionsOptions {
  definition: object;
  stateMachineArn: string;
  taskHandlers: Record<string, TaskHandler>;
  store: ExecutionStore;
  tokens: TaskTokens;
  onEvent: (e: ExecutionEvent) => void;
  log: (line: string) => void;
}

type Run = ReturnType<StateMachine['run']>;
type Outcome = Pick<ExecutionRecord, 'status' | 'output' | 'error' | 'cause'>;

export class LocalStepFunctions {
  readonly stateMachineArn: string;
  private readonly machine: StateMachine;
  private readonly tasks: ReturnType<typeof findTaskStates>;
  private readonly running = new Map<string, { stop: () => void; done: Promise<void> }>();
  /** The executor resolves `$$.Task.Token` to this; each callback attempt swaps in a real token. */
  private readonly tokenPlaceholder = `local-task-token-${randomBytes(16).toString('hex')}`;
  private shuttingDown = false;

  constructor(private readonly opts: LocalStepFunctionsOptions) {
    this.stateMachineArn = opts.stateMachineArn;
    this.tasks = findTaskStates(opts.definition);
    const missing = [...this.tasks.keys()].filter((name) => !opts.taskHandlers[name]);
    if (missing.length) throw new Error(`no local task handler for state(s): ${missing.join(', ')}`);
    // Resources are never called (every Task runs locally), so their ARNs need no checking.
    this.machine = new StateMachine(opts.definition as StateMachineDefinition, { validationOptions: { checkArn: false } });
  }

  /** Same name and input while running → the same execution (StartExecution is idempotent). */
  start(name: string, input: string): ExecutionRecord {
    const executionArn = this.executionArn(name);
    const existing = this.opts.store.get(executionArn);
    if (existing) {
      if (existing.status === 'RUNNING' && existing.input === input) return existing;
      throw new AwsError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
    }
    const rec: ExecutionRecord = { executionArn, stateMachineArn: this.stateMachineArn, name, input, status: 'RUNNING', startDate: Date.now() };
    this.opts.store.put(rec);
    this.launch(rec, this.machine, JSON.parse(input));
    return rec;
  }

  /**
   * Resumes an execution a restart found running, as a redrive does: from the state it was in,
   * with that state's input. One that cannot resume is closed as FAILED (Local.Interrupted)
   * with the reason; false then.
   */
  resume(rec: ExecutionRecord): boolean {
    const redrive = redriveOf(this.opts.definition, rec);
    if ('cannot' in redrive) {
      this.opts.store.close(rec.executionArn, { status: 'FAILED', error: INTERRUPTED_ERROR, cause: `local mode could not resume this execution: ${redrive.cannot}` });
      return false;
    }
    // The original definition was validated when local mode started.
    const machine = new StateMachine(redrive.definition as StateMachineDefinition, { validationOptions: { noValidate: true } });
    this.launch(rec, machine, redrive.input);
    return true;
  }

  stop(executionArn: string, error?: string, cause?: string): ExecutionRecord {
    const rec = this.describe(executionArn);
    if (this.opts.store.close(executionArn, { status: 'ABORTED', error, cause })) this.running.get(executionArn)?.stop();
    return rec;
  }

  describe(executionArn: string): ExecutionRecord {
    const rec = this.opts.store.get(executionArn);
    if (!rec) throw new AwsError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    return rec;
  }

  /** This machine's executions, newest first. */
  list(): ExecutionRecord[] {
    return this.opts.store.list().filter((e) => e.stateMachineArn === this.stateMachineArn);
  }

  /** Whether the execution is one of this machine's. */
  owns(executionArn: string): boolean {
    return executionArn.startsWith(`${this.executionArn('')}`);
  }

  /** Resolves when the execution has ended (at once if it is not running). */
  async whenDone(executionArn: string): Promise<ExecutionRecord> {
    await this.running.get(executionArn)?.done;
    return this.describe(executionArn);
  }

  /**
   * Stops the executor without closing the records: executions still running stay RUNNING on
   * disk, at the state they were in, and the next start resumes them there.
   */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    const runs = [...this.running.values()];
    for (const run of runs) run.stop();
    await Promise.all(runs.map((r) => r.done));
  }

  executionArn(name: string): string {
    return `${this.stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
  }

  private launch(rec: ExecutionRecord, machine: StateMachine, input: unknown): void {
    const scope = new AbortController();
    const run = machine.run(input as never, {
      overrides: {
        taskResourceLocalHandlers: localTaskHandlers(this.tasks, this.opts.taskHandlers, this.opts.tokens, {
          executionArn: rec.executionArn,
          executionName: rec.name,
          signal: scope.signal,
          tokenPlaceholder: this.tokenPlaceholder,
        }),
      },
      context: {
        Execution: { Id: rec.executionArn, Name: rec.name },
        StateMachine: { Id: this.stateMachineArn, Name: this.stateMachineArn.split(':').pop() },
        Task: { Token: this.tokenPlaceholder },
      },
    });
    const stop = () => {
      scope.abort();
      run.abort();
    };
    const done = this.follow(rec, run, scope)
      .catch((err) => this.opts.log(`execution ${rec.name}: could not record its end: ${(err as Error).message}`))
      .finally(() => this.running.delete(rec.executionArn));
    this.running.set(rec.executionArn, { stop, done });
  }

  private async follow(rec: ExecutionRecord, run: Run, scope: AbortController): Promise<void> {
    const events = this.forwardEvents(rec, run.eventLogs);
    const outcome = await run.result.then(succeeded, failed);
    // Tell handlers still running (a Parallel sibling, a stopped run) to stop.
    scope.abort();
    if (this.shuttingDown) return;
    this.opts.store.close(rec.executionArn, outcome);
    await events;
    const end = this.describe(rec.executionArn);
    this.emit(rec, { type: END_EVENT[end.status], status: end.status, error: end.error, cause: end.cause });
  }

  private async forwardEvents(rec: ExecutionRecord, events: Run['eventLogs']): Promise<void> {
    for await (const e of events) {
      if (this.shuttingDown) return;
      // Top-level states only: a Parallel or Map state resumes as a whole.
      if (e.type === 'StateEntered' && !('parentState' in e && e.parentState)) {
        this.opts.store.move(rec.executionArn, { state: e.state.name, input: JSON.stringify(e.state.input ?? null) });
      }
      if (e.type === 'StateEntered') this.emit(rec, { type: e.type, status: 'RUNNING', state: e.state.name });
      if (e.type === 'StateFailed') {
        this.emit(rec, { type: e.type, status: 'RUNNING', state: e.state.name, error: e.Error, cause: String(e.Cause) });
      }
    }
  }

  private emit(rec: ExecutionRecord, e: Omit<ExecutionEvent, 'executionArn' | 'name'>): void {
    try {
      this.opts.onEvent({ executionArn: rec.executionArn, name: rec.name, ...e });
    } catch {
      // A listener's bug must not break the execution.
    }
  }
}

const END_EVENT: Record<ExecutionStatus, string> = {
  RUNNING: 'ExecutionStarted',
  SUCCEEDED: 'ExecutionSucceeded',
  FAILED: 'ExecutionFailed',
  TIMED_OUT: 'ExecutionTimedOut',
  ABORTED: 'ExecutionAborted',
};

function succeeded(output: unknown): Outcome {
  return { status: 'SUCCEEDED', output: JSON.stringify(output ?? null) };
}

function failed(err: unknown): Outcome {
  if (err instanceof ExecutionAbortedError) return { status: 'ABORTED' };
  if (err instanceof ExecutionTimeoutError) return { status: 'TIMED_OUT', error: 'States.Timeout', cause: 'The execution timed out.' };
  const cause = err instanceof ExecutionError && err.cause instanceof Error ? err.cause : (err as Error);
  return { status: 'FAILED', error: cause?.name ?? 'Error', cause: cause?.message ?? String(err) };
}
