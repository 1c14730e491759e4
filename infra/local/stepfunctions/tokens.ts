/**
 * Task tokens of `.waitForTaskToken` tasks: issued per attempt, answered by SendTask*, and
 * failed with `States.HeartbeatTimeout` when HeartbeatSeconds pass without news (the executor
 * does not enforce HeartbeatSeconds). Tokens are secrets: no message here contains one.
 */
import { randomBytes } from 'node:crypto';
import { AwsError, StateError } from '../errors.ts';

interface OpenTask {
  heartbeatMs: number | undefined;
  timer?: NodeJS.Timeout;
  resolve: (output: unknown) => void;
  reject: (err: Error) => void;
}

const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;
/** Closed tokens remembered to answer TaskTimedOut rather than TaskDoesNotExist. */
const CLOSED_MEMORY = 10_000;

export class TaskTokens {
  private readonly open = new Map<string, OpenTask>();
  private readonly closed = new Set<string>();

  /** Opens a callback task; `result` settles on SendTaskSuccess/Failure or a missed heartbeat. */
  issue(heartbeatSeconds?: number): { token: string; result: Promise<unknown> } {
    const token = randomBytes(32).toString('base64url');
    let task!: OpenTask;
    const result = new Promise<unknown>((resolve, reject) => {
      task = { heartbeatMs: heartbeatSeconds ? heartbeatSeconds * 1000 : undefined, resolve, reject };
    });
    // Nobody may be listening any more when a closed task is rejected.
    result.catch(() => undefined);
    this.open.set(token, task);
    this.arm(token, task);
    return { token, result };
  }

  succeed(token: string, output: unknown): void {
    this.take(token).resolve(output);
  }

  fail(token: string, error: string, cause: string): void {
    this.take(token).reject(new StateError(error, cause));
  }

  heartbeat(token: string): void {
    this.arm(token, this.find(token));
  }

  /** Closes a task nobody waits for any more (task timed out, execution ended). */
  close(token: string): void {
    const task = this.open.get(token);
    if (!task) return;
    this.retire(token, task);
    task.reject(new StateError('States.Runtime', 'task closed'));
  }

  closeAll(): void {
    for (const token of [...this.open.keys()]) this.close(token);
  }

  private take(token: string): OpenTask {
    const task = this.find(token);
    this.retire(token, task);
    return task;
  }

  private find(token: string): OpenTask {
    const task = this.open.get(token);
    if (task) return task;
    if (this.closed.has(token)) throw new AwsError('TaskTimedOut', 'Task Timed Out: the task is closed');
    if (TOKEN_SHAPE.test(token)) throw new AwsError('TaskDoesNotExist', 'Task does not exist');
    throw new AwsError('InvalidToken', 'Invalid Token: not a task token');
  }

  private retire(token: string, task: OpenTask): void {
    clearTimeout(task.timer);
    this.open.delete(token);
    this.closed.add(token);
    if (this.closed.size > CLOSED_MEMORY) this.closed.delete(this.closed.values().next().value as string);
  }

  private arm(token: string, task: OpenTask): void {
    if (!task.heartbeatMs) return;
    clearTimeout(task.timer);
    task.timer = setTimeout(() => {
      this.retire(token, task);
      task.reject(new StateError('States.HeartbeatTimeout', `no heartbeat within ${task.heartbeatMs! / 1000} s`));
    }, task.heartbeatMs);
  }
}
