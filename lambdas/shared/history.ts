/**
 * The execution history of a Standard state machine ends at 25,000 events: an execution that
 * would add one more fails (Step Functions quotas). The workflow's two wait loops are the only
 * part whose length the configuration decides, so the configuration schema refuses timeouts
 * whose loops could pass the limit. The counts below are read off the workflow
 * (infra/constructs/workflow.ts, infra/constructs/trainer-queue.ts); test/infra/history.test.ts derives
 * them again from the synthesized definition, so they cannot drift from it.
 */

export const HISTORY_EVENT_LIMIT = 25_000;

/** Events one visit of a state adds (the HistoryEvent types), without retries. */
export const STATE_EVENTS = {
  /** A Lambda function as the Resource: TaskStateEntered, LambdaFunctionScheduled, LambdaFunctionStarted, its end, TaskStateExited. */
  lambdaTask: 5,
  /** A request-response service integration: TaskStateEntered, TaskScheduled, TaskStarted, its end, TaskStateExited. */
  serviceTask: 5,
  /** `.waitForTaskToken` and `.sync`: also TaskSubmitted once the call is made. */
  waitingTask: 6,
  pass: 2,
  choice: 2,
  wait: 2,
  succeed: 2,
  fail: 1,
} as const;

/** A retry is another attempt: scheduled, started, submitted (waiting tasks), its end. */
export const RETRY_EVENTS = 4;

/** One turn of the slot wait: the callback task times out, and a Pass leads back to it. */
export const SLOT_WAIT_TURN_EVENTS = STATE_EVENTS.waitingTask + STATE_EVENTS.pass;

/**
 * One turn of the trainer wait: the callback task times out, the trainer is asked (a Lambda
 * task), and a Choice leads back. Heartbeats (SendTaskHeartbeat) add no event.
 */
export const TRAINER_WAIT_TURN_EVENTS = STATE_EVENTS.waitingTask + STATE_EVENTS.lambdaTask + STATE_EVENTS.choice;

/**
 * Everything outside the two wait loops, every retry of every state taken (the webhook's at
 * their largest), the SageMaker capacity retries included: about 750 today (the test keeps
 * this above its bound). The rest of the margin is for the rare retry inside a wait turn.
 */
export const OUTSIDE_LOOPS_EVENTS = 2_500;

export interface LoopTimeouts {
  queue_seconds: number;
  queue_poll_seconds: number;
  training_seconds: number;
  callback_heartbeat_seconds: number;
}

/**
 * The most events an execution can add. A slot-wait turn lasts `queue_poll_seconds`, and the
 * queue refuses a turn that starts after `queue_seconds`. A trainer-wait turn lasts at least
 * `callback_heartbeat_seconds` (a trainer that sends no heartbeat times it out sooner than
 * `callback_poll_seconds`), and the trainer check refuses a turn after `training_seconds`.
 */
export function worstCaseHistory(t: LoopTimeouts) {
  const slotTurns = Math.floor(t.queue_seconds / t.queue_poll_seconds) + 2;
  const trainerTurns = Math.floor(t.training_seconds / t.callback_heartbeat_seconds) + 2;
  const events = OUTSIDE_LOOPS_EVENTS + slotTurns * SLOT_WAIT_TURN_EVENTS + trainerTurns * TRAINER_WAIT_TURN_EVENTS;
  return { slotTurns, trainerTurns, events };
}

/** Why the timeouts could pass the history limit, or null. */
export function historyLimitProblem(t: LoopTimeouts): string | null {
  const { slotTurns, trainerTurns, events } = worstCaseHistory(t);
  if (events <= HISTORY_EVENT_LIMIT) return null;
  const n = (x: number) => x.toLocaleString('en-US');
  return (
    `a training's execution history could reach ${n(events)} events, over the ${n(HISTORY_EVENT_LIMIT)} Step Functions allows: ` +
    `the slot wait takes up to ${n(slotTurns)} turns (queue_seconds ${t.queue_seconds} / queue_poll_seconds ${t.queue_poll_seconds}) of ${SLOT_WAIT_TURN_EVENTS} events, ` +
    `the trainer wait up to ${n(trainerTurns)} turns (training_seconds ${t.training_seconds} / callback_heartbeat_seconds ${t.callback_heartbeat_seconds}) of ${TRAINER_WAIT_TURN_EVENTS}, ` +
    `the rest up to ${n(OUTSIDE_LOOPS_EVENTS)}; raise timeouts.queue_poll_seconds or timeouts.callback_heartbeat_seconds ` +
    `(and callback_poll_seconds above it), or lower timeouts.queue_seconds or timeouts.training_seconds`
  );
}
