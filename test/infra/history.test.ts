/**
 * Step Functions' 25,000-event execution history: the event counts the configuration schema
 * uses (lambdas/shared/history.ts) are derived again here from the synthesized definition, and
 * the schema refuses timeouts whose wait loops could pass the limit.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { type Config, mergeConfig, parseConfig } from '#shared/config';
import {
  HISTORY_EVENT_LIMIT,
  OUTSIDE_LOOPS_EVENTS,
  RETRY_EVENTS,
  SLOT_WAIT_TURN_EVENTS,
  STATE_EVENTS,
  TRAINER_WAIT_TURN_EVENTS,
  worstCaseHistory,
} from '#shared/history';
import { CAPACITY_ATTEMPTS } from '#shared/trainers/sagemaker/training-jobs';
import type { AslState } from '#infra/local/cloudformation/state-machine';
import { synthesizeDefinition } from '#infra/local/cloudformation/synthesize';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();
const IMAGE = `r8.im/replicate/dreambooth@sha256:${'c'.repeat(64)}`;
const withConfig = (over: unknown): Config => parseConfig(mergeConfig(cdkJson.context.dreambooth, over));

/** Events one visit of a state adds, by what it is. */
function visitEvents(s: AslState): number {
  switch (s.Type) {
    case 'Task':
      if (/^arn:aws:lambda:/.test(s.Resource!)) return STATE_EVENTS.lambdaTask;
      return /\.(waitForTaskToken|sync)$/.test(s.Resource!) ? STATE_EVENTS.waitingTask : STATE_EVENTS.serviceTask;
    case 'Pass':
      return STATE_EVENTS.pass;
    case 'Choice':
      return STATE_EVENTS.choice;
    case 'Wait':
      return STATE_EVENTS.wait;
    case 'Succeed':
      return STATE_EVENTS.succeed;
    case 'Fail':
      return STATE_EVENTS.fail;
    default:
      throw new Error(`no event count for a ${s.Type} state`);
  }
}

/** Every retry of a state taken (MaxAttempts defaults to 3). */
const retryEvents = (s: AslState) => ((s.Retry as { MaxAttempts?: number }[] | undefined) ?? []).reduce((n, r) => n + (r.MaxAttempts ?? 3) * RETRY_EVENTS, 0);

function successors(s: AslState): string[] {
  const choices = (s.Choices as { Next: string }[] | undefined) ?? [];
  const catches = (s.Catch as { Next: string }[] | undefined) ?? [];
  return [s.Next, s.Default, ...choices.map((c) => c.Next), ...catches.map((c) => c.Next)].filter((n): n is string => typeof n === 'string');
}

/** The definition's loops: its strongly connected components of more than one state (Tarjan). */
function loops(states: Record<string, AslState>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    for (const w of successors(states[v]!)) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do component.push((w = stack.pop()!));
      while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const name of Object.keys(states)) if (!index.has(name)) visit(name);
  return found;
}

const SLOT_WAIT = ['Keep waiting for a free slot', 'Wait for a free slot on the trainer'];
const TRAINER_WAIT = ['Ask the trainer how it is doing', 'Has the trainer finished?', 'Start the trainer and wait for its callback'];
const CAPACITY = ['Did SageMaker lack capacity?', 'Prepare the SageMaker job again', 'Train the model on SageMaker', 'Wait for SageMaker capacity'];

describe('the execution history limit', () => {
  let config: Config;
  let states: Record<string, AslState>;

  beforeAll(() => {
    // Every backend's states and the largest webhook retry schedule: the most states and retries a definition has.
    config = withConfig({
      trainers: { gpu: { backend: 'sagemaker', image: IMAGE } },
      webhooks: { retry_max_attempts: 20 },
    });
    states = synthesizeDefinition(config).asl.States;
  }, 120_000);

  it('has exactly three loops: the slot wait, the trainer wait, the SageMaker capacity retry', () => {
    expect(loops(states).sort()).toEqual([CAPACITY, SLOT_WAIT, TRAINER_WAIT].sort());
  });

  it('a slot-wait turn adds SLOT_WAIT_TURN_EVENTS and lasts timeouts.queue_poll_seconds', () => {
    const wait = states['Wait for a free slot on the trainer']!;
    expect(wait.TimeoutSeconds).toBe(config.timeouts.queue_poll_seconds);
    expect((wait.Catch as { ErrorEquals: string[]; Next: string }[])[0]).toEqual(expect.objectContaining({ ErrorEquals: ['States.Timeout'], Next: 'Keep waiting for a free slot' }));
    expect(SLOT_WAIT.reduce((n, s) => n + visitEvents(states[s]!), 0)).toBe(SLOT_WAIT_TURN_EVENTS);
  });

  it('a trainer-wait turn adds TRAINER_WAIT_TURN_EVENTS and lasts at least timeouts.callback_heartbeat_seconds', () => {
    const wait = states['Start the trainer and wait for its callback']!;
    expect(wait.HeartbeatSeconds).toBe(config.timeouts.callback_heartbeat_seconds);
    expect(wait.TimeoutSeconds).toBeGreaterThan(config.timeouts.callback_heartbeat_seconds);
    expect(TRAINER_WAIT.reduce((n, s) => n + visitEvents(states[s]!), 0)).toBe(TRAINER_WAIT_TURN_EVENTS);
  });

  it('everything outside the two wait loops, every retry taken, stays within OUTSIDE_LOOPS_EVENTS', () => {
    const waits = new Set([...SLOT_WAIT, ...TRAINER_WAIT]);
    let bound = 2; // ExecutionStarted and the execution's end
    for (const [name, s] of Object.entries(states)) {
      if (waits.has(name)) continue;
      bound += (visitEvents(s) + retryEvents(s)) * (CAPACITY.includes(name) ? CAPACITY_ATTEMPTS : 1);
    }
    // The first turn of each wait loop, with every retry.
    for (const name of waits) bound += retryEvents(states[name]!);
    expect(bound).toBeLessThanOrEqual(OUTSIDE_LOOPS_EVENTS);
    // A margin, not a guess far off: within a factor of four.
    expect(bound * 4).toBeGreaterThan(OUTSIDE_LOOPS_EVENTS);
  });

  it('the shipped timeouts pass, with room', () => {
    expect(worstCaseHistory(withConfig({}).timeouts).events).toBeLessThan(HISTORY_EVENT_LIMIT / 2);
  });

  it('refuses timeouts whose loops could pass 25,000 events, with the numbers and the keys to change', () => {
    // A week in the queue, looking every minute: 10,082 turns of 8 events.
    expect(() => withConfig({ timeouts: { queue_seconds: 7 * 86_400, queue_poll_seconds: 60 } })).toThrow(
      /dreambooth\.timeouts: a training's execution history could reach 83,650 events, over the 25,000 Step Functions allows: the slot wait takes up to 10,082 turns \(queue_seconds 604800 \/ queue_poll_seconds 60\) of 8 events, .*raise timeouts\.queue_poll_seconds or timeouts\.callback_heartbeat_seconds/,
    );
    // A day of training with a trainer that sends no heartbeat, asked every 10 s.
    expect(() => withConfig({ timeouts: { training_seconds: 86_400, callback_heartbeat_seconds: 10, callback_poll_seconds: 60 } })).toThrow(
      /the trainer wait up to 8,642 turns \(training_seconds 86400 \/ callback_heartbeat_seconds 10\) of 13/,
    );
  });

  it('accepts the same waits with longer turns', () => {
    expect(() => withConfig({ timeouts: { queue_seconds: 7 * 86_400, queue_poll_seconds: 600 } })).not.toThrow();
  });
});
