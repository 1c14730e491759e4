/**
 * A redrive's definition: the execution's own definition, started at the state it was in. The
 * executor sets `$$.Execution.StartTime` and `$$.Execution.Input` to the run's own; a resumed
 * run is a new run of the executor, so where the definition reads either, the copy carries the
 * original execution's value instead (a deadline measured from the start stays truthful), and
 * an execution timeout counts from the original start.
 */
import type { ExecutionRecord } from './executions.ts';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Definition = { StartAt: string; States: Record<string, unknown>; TimeoutSeconds?: number };

/** Where the resumed run starts, with what input; or why it cannot resume. */
export type Redrive = { definition: Definition; input: unknown } | { cannot: string };

export function redriveOf(definition: object, rec: ExecutionRecord, now = Date.now()): Redrive {
  const def = definition as Definition;
  const at = rec.position ?? { state: def.StartAt, input: rec.input };
  if (!Object.hasOwn(def.States, at.state)) {
    return { cannot: `it was in state "${at.state}", which the state machine no longer has (local mode was upgraded since)` };
  }
  const startTime = new Date(rec.startDate).toISOString();
  const originalInput = JSON.parse(rec.input) as Json;
  const copy = withContext(def as unknown as Json, startTime, originalInput) as unknown as Definition;
  copy.StartAt = at.state;
  if (def.TimeoutSeconds !== undefined) {
    const left = def.TimeoutSeconds - Math.floor((now - rec.startDate) / 1000);
    // Out of time already: the executor times it out at once, as Step Functions would have.
    copy.TimeoutSeconds = Math.max(left, 0) || 0.001;
  }
  return { definition: copy, input: JSON.parse(at.input) };
}

const START_TIME = '$$.Execution.StartTime';
const INPUT = '$$.Execution.Input';

/** The definition with the original start time and input where a path or an intrinsic reads them. */
function withContext(value: Json, startTime: string, input: Json): Json {
  if (Array.isArray(value)) return value.map((v) => withContext(v, startTime, input));
  if (!value || typeof value !== 'object') return value;
  const out: Record<string, Json> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key.endsWith('.$') && typeof v === 'string') {
      const literal = key.slice(0, -2);
      if (v === START_TIME) out[literal] = startTime;
      else if (v === INPUT) out[literal] = input;
      else if (v.startsWith('States.')) out[key] = v.split(START_TIME).join(`'${startTime}'`);
      else out[key] = v;
      continue;
    }
    out[key] = withContext(v, startTime, input);
  }
  return out;
}
