/**
 * Runs every Task state of the definition through a local handler, with the semantics the
 * handlers see on AWS: a fresh task token per attempt for `.waitForTaskToken` tasks, the
 * thrown error's name as the state error, an AbortSignal that fires when the task times out
 * or the execution stops.
 */
import { StateError, toStateError } from '../errors.ts';
import type { TaskTokens } from './tokens.ts';

export interface TaskContext {
  /** Only for `.waitForTaskToken` tasks; also substituted where the payload used `$$.Task.Token`. */
  taskToken?: string;
  executionArn: string;
  executionName: string;
  stateName: string;
  /** Fires when the task times out, misses its heartbeat, or the execution is stopped. */
  signal: AbortSignal;
}
export type TaskHandler = (input: unknown, ctx: TaskContext) => Promise<unknown>;

interface TaskState {
  Type: 'Task';
  Resource: string;
  TimeoutSeconds?: number;
  TimeoutSecondsPath?: string;
  HeartbeatSeconds?: number;
}

/** What one execution's tasks share. */
export interface ExecutionScope {
  executionArn: string;
  executionName: string;
  /** Aborted when the execution stops or ends. */
  signal: AbortSignal;
  /** Stand-in the executor resolves `$$.Task.Token` to; replaced by the real token per attempt. */
  tokenPlaceholder: string;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type LocalHandler = (input: Json) => Promise<Json>;

/** The executor's default for a Task without TimeoutSeconds. */
const DEFAULT_TIMEOUT_SECONDS = 60;

/** Task states by name, including those inside Parallel branches and Map iterators. */
export function findTaskStates(definition: unknown): Map<string, TaskState> {
  const found = new Map<string, TaskState>();
  const walk = (machine: { States?: Record<string, Record<string, unknown>> } | undefined) => {
    for (const [name, state] of Object.entries(machine?.States ?? {})) {
      if (state.Type === 'Task') found.set(name, state as unknown as TaskState);
      for (const branch of (state.Branches as object[] | undefined) ?? []) walk(branch);
      walk((state.ItemProcessor ?? state.Iterator) as object | undefined);
    }
  };
  walk(definition as object);
  return found;
}

export function localTaskHandlers(
  states: Map<string, TaskState>,
  handlers: Record<string, TaskHandler>,
  tokens: TaskTokens,
  scope: ExecutionScope,
): Record<string, LocalHandler> {
  const out: Record<string, LocalHandler> = {};
  for (const [name, state] of states) out[name] = (input) => runTask(name, state, handlers[name]!, tokens, scope, input);
  return out;
}

async function runTask(
  stateName: string,
  state: TaskState,
  handler: TaskHandler,
  tokens: TaskTokens,
  scope: ExecutionScope,
  input: Json,
): Promise<Json> {
  // A stopped run may still retry this state: never start new work for it.
  if (scope.signal.aborted) throw stopped();
  const local = new AbortController();
  const signal = AbortSignal.any([scope.signal, local.signal]);
  const ctx: TaskContext = { executionArn: scope.executionArn, executionName: scope.executionName, stateName, signal };
  const timeoutMs = taskTimeoutMs(state);
  // Created before the executor's own timer with the same delay, so it fires first: the
  // handler is told to stop, and the executor then fails the task with States.Timeout.
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => local.abort(timeoutReason()), timeoutMs);
  try {
    const work = state.Resource.endsWith('.waitForTaskToken')
      ? callbackTask(state, handler, tokens, scope, input, ctx)
      : handler(input, ctx);
    const result = await Promise.race([work, rejectOnAbort(scope.signal)]);
    if (local.signal.aborted) return timedOut();
    return JSON.parse(JSON.stringify(result ?? null)) as Json;
  } catch (err) {
    // Settle at once when the run stopped, so the executor clears its task timer.
    if (scope.signal.aborted) throw stopped();
    if (local.signal.aborted) return timedOut();
    local.abort(err);
    throw toStateError(err);
  } finally {
    clearTimeout(timer);
  }
}

async function callbackTask(
  state: TaskState,
  handler: TaskHandler,
  tokens: TaskTokens,
  scope: ExecutionScope,
  input: Json,
  ctx: TaskContext,
): Promise<unknown> {
  const { token, result } = tokens.issue(state.HeartbeatSeconds);
  ctx.signal.addEventListener('abort', () => tokens.close(token), { once: true });
  const payload = replaceString(input, scope.tokenPlaceholder, token);
  // A handler that throws fails the task; its return value is not the task's output.
  const [, output] = await Promise.all([handler(payload, { ...ctx, taskToken: token }), result]);
  return output;
}

function taskTimeoutMs(state: TaskState): number | undefined {
  if (state.TimeoutSeconds) return state.TimeoutSeconds * 1000;
  return state.TimeoutSecondsPath ? undefined : DEFAULT_TIMEOUT_SECONDS * 1000;
}

/**
 * After a task timeout the executor fails the task with its own States.Timeout; a late
 * outcome from the handler must not race it, so the task never answers.
 */
const timedOut = () => new Promise<never>(() => undefined);

const stopped = () => new StateError('States.Runtime', 'the execution stopped');

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(stopped()), { once: true }));
}

const timeoutReason = () => new StateError('States.Timeout', 'task timed out');

function replaceString(value: Json, from: string, to: string): Json {
  if (typeof value === 'string') return value.split(from).join(to);
  if (Array.isArray(value)) return value.map((v) => replaceString(v, from, to));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, replaceString(v, from, to)]));
  }
  return value;
}
