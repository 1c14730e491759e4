/**
 * The trainer queue: per trainer, a set of slots and a queue of waiting trainings, kept in the
 * trainings table (./items.ts). Whoever joins the queue or frees a slot then *dispatches*: it
 * reads the slots and the queue and hands free slots to the next waiters in service order
 * (./order.ts). Both write before they read, and reads are consistent, so a waiter joining
 * while a slot frees is always seen by one of the two.
 * A holder is woken through its task token; a wake-up that a crash loses is found by the
 * waiter's own poll (the wait is a loop), and a holder whose execution has ended is released.
 */
import { DescribeExecutionCommand, SendTaskSuccessCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { Config } from '../config.ts';
import type { Store } from '../store.ts';
import { serverFor, slotCount } from '../trainers/capacity.ts';
import { type Holder, type QueueMember, QueueTable, type Slots, type Waiter } from './items.ts';
import { positionIn, serviceOrder } from './order.ts';

export { memberOf, type QueueMember, type Slots, type Waiter } from './items.ts';
export { serviceOrder } from './order.ts';

/** What a training gets when it leaves the queue (the wait task's output). */
export interface SlotGrant {
  trainer: string;
  /** null: the training needs no slot (a re-template: its run is already over). */
  slot: number | null;
  /** The pool server the run is pinned to, when the trainer has a pool. */
  server: string | null;
  /** When the slot was granted (ISO): the training's `started_at`, so starts keep queue order. */
  granted_at: string | null;
}

export interface QueueDeps {
  store: Store;
  sfn: SFNClient;
  config: Config;
  now: () => Date;
}

/** Closed tokens: the waiter is between two polls (it finds its slot itself) or gone. */
const CLOSED_TOKEN = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);
const MAX_CONFLICTS = 50;

export class QueueTimeoutError extends Error {
  override name = 'QueueTimeout';
}

/** The line a queued training's logs show. */
export const waitingLine = (trainer: string, ahead: number) => `waiting for trainer ${trainer}: ${ahead} ahead\n`;

export class TrainerQueue {
  private readonly items: QueueTable;

  constructor(private readonly d: QueueDeps) {
    this.items = new QueueTable(d.store);
  }

  /**
   * "Wait for a free slot on the trainer": joins the queue (or renews the waiting token) and
   * dispatches. Answers the grant at once when the training holds a slot; otherwise how many
   * are ahead (null on a later turn that found every slot taken: it reads no queue, since a
   * full queue re-polling at once would load the table just when slots free). Each turn of
   * the wait loop comes here again: it enforces `timeouts.queue_seconds` and, when no slot is
   * free, reclaims those of ended executions.
   */
  async acquire(m: QueueMember, token: string, execution: string): Promise<{ grant: SlotGrant | null; ahead: number | null }> {
    const { waiter, joined } = await this.items.join(m, token, execution, this.d.now().getTime());
    const limit = this.d.config.timeouts.queue_seconds;
    // Read after the join: a release that wrote before this read is seen, one after it sees us.
    let slots = await this.items.readSlots(m.trainer);
    if (!slots.holders[m.id] && this.d.now().getTime() - waiter.enqueued_at > limit * 1000) {
      await this.items.deleteWait(m);
      // Granted meanwhile? Then the failure path frees it.
      throw new QueueTimeoutError(`no slot on trainer ${m.trainer} came free within ${limit} s (timeouts.queue_seconds)`);
    }
    const full = () => Object.keys(slots.holders).length >= slotCount(this.d.config.trainers[m.trainer]);
    let waiting: Waiter[] | null = null;
    if (!slots.holders[m.id] && full()) {
      if ((await this.reclaim(m.trainer, slots)).length) slots = await this.items.readSlots(m.trainer);
    }
    if (!slots.holders[m.id] && !full()) ({ slots, waiting } = await this.dispatch(m.trainer));
    const held = slots.holders[m.id];
    if (held) {
      // Woken already by whoever granted it, unless it read our previous token: wake us here.
      // (Leaving the queue first is safe: a crash before the wake-up finds the slot next turn.)
      const grant = this.grantOf(m.trainer, held);
      await Promise.all([this.signal(token, grant), this.items.deleteWait(m)]);
      return { grant, ahead: 0 };
    }
    if (waiting) return { grant: null, ahead: positionIn(waiting, slots, m.id) };
    // Every slot taken: a burst joining at once must not each read the whole queue (that read
    // is what slows a burst down), so a new waiter first counts who joined before it.
    if (!joined) return { grant: null, ahead: null };
    const before = await this.items.countBefore(m);
    // All of them its owner's: they go first (FIFO within an owner), so that count is its
    // place among those who came before it (another owner arriving later may still be served
    // before it: GET /v1/trainings/{id} shows the live place). Other owners' waiters among them:
    // round-robin may serve it before some of those, and only the whole queue says where.
    if (before.own === before.all) return { grant: null, ahead: before.all };
    return { grant: null, ahead: positionIn(await this.items.waiting(m.trainer), slots, m.id) };
  }

  /** How many are served before this training (null when it is not waiting), for its logs. */
  async position(m: QueueMember): Promise<number | null> {
    const [slots, waiting] = await Promise.all([this.items.readSlots(m.trainer), this.items.waiting(m.trainer)]);
    if (slots.holders[m.id] || !waiting.some((w) => w.training_id === m.id)) return null;
    return positionIn(waiting, slots, m.id);
  }

  /**
   * Joins the queue when the training is created, before its execution runs: the queue's order
   * is then the order of creation, however the executions' first steps interleave. Its token
   * comes with "Wait for a free slot"; a slot granted before that is found there.
   */
  async enqueue(m: QueueMember, execution: string): Promise<void> {
    await this.items.putWaiter(m, execution, this.d.now().getTime());
  }

  /** Frees the training's slot and leaves the queue (idempotent), then wakes the next waiter. */
  async release(m: QueueMember): Promise<{ released: boolean }> {
    const [, out] = await Promise.all([this.items.deleteWait(m), this.dispatch(m.trainer, m.id)]);
    return { released: out.dropped };
  }

  /** Completes a wait task that needs no slot. */
  async wakeOnly(token: string, grant: SlotGrant): Promise<void> {
    await this.signal(token, grant);
  }

  /** Capacity, busy slots and queue length, for GET /v1/trainers. */
  async status(trainer: string): Promise<{ capacity: number; busy: number; queued: number }> {
    const [slots, waiting] = await Promise.all([this.items.readSlots(trainer), this.items.waiting(trainer)]);
    const queued = waiting.filter((w) => !slots.holders[w.training_id]).length;
    return { capacity: slotCount(this.d.config.trainers[trainer]), busy: Object.keys(slots.holders).length, queued };
  }

  /**
   * Hands free slots to the next waiters in service order and wakes them; with `drop`, frees
   * that training's slot in the same write (the freed slot goes straight to the next waiter).
   */
  async dispatch(trainer: string, drop?: string): Promise<{ slots: Slots; waiting: Waiter[]; dropped: boolean }> {
    for (let attempt = 0; ; attempt++) {
      const [read, waiting] = await Promise.all([this.items.readSlots(trainer), this.items.waiting(trainer)]);
      const dropped = drop !== undefined && read.holders[drop] !== undefined;
      const slots = dropped ? structuredClone(read) : read;
      if (dropped) delete slots.holders[drop!];
      const used = new Set(Object.values(slots.holders).map((h) => h.slot));
      const capacity = slotCount(this.d.config.trainers[trainer]);
      const free = Array.from({ length: capacity }, (_, i) => i).filter((i) => !used.has(i));
      // The training being released leaves the queue too (its item may still be read here).
      const candidates = waiting.filter((w) => !slots.holders[w.training_id] && w.training_id !== drop);
      const picks = serviceOrder(candidates, slots.served).slice(0, free.length);
      if (picks.length === 0 && !dropped) return { slots, waiting, dropped };
      const next: Slots = structuredClone(slots);
      const now = this.d.now().getTime();
      picks.forEach((w, i) => {
        next.holders[w.training_id] = { slot: free[i]!, owner: w.owner, execution: w.execution, since: now };
        next.served[w.owner] = ++next.grants;
      });
      // Only owners still waiting or holding need remembering.
      const active = new Set([...candidates.map((w) => w.owner), ...Object.values(next.holders).map((h) => h.owner)]);
      for (const owner of Object.keys(next.served)) if (!active.has(owner)) delete next.served[owner];
      if (!(await this.items.writeSlots(trainer, read, next))) {
        if (attempt >= MAX_CONFLICTS) throw new Error(`trainer ${trainer}: too many concurrent queue updates`);
        await backoff(attempt);
        continue;
      }
      await this.wake(trainer, picks, next);
      // A slot freed here but left free: a waiter that joined after our read may have seen it
      // taken, so look again now that the write is in (reads after writes lose no waiter).
      if (dropped && picks.length < free.length) await this.dispatch(trainer);
      return { slots: next, waiting, dropped };
    }
  }

  /**
   * Releases the slots of holders whose execution is no longer running (a lease, checked once
   * it is `timeouts.queue_poll_seconds` old) and hands them on.
   */
  async reclaim(trainer: string, slots?: Slots): Promise<string[]> {
    const current = slots ?? (await this.items.readSlots(trainer));
    const lease = this.d.config.timeouts.queue_poll_seconds * 1000;
    const now = this.d.now().getTime();
    const dead: string[] = [];
    for (const [id, h] of Object.entries(current.holders)) {
      if (now - h.since < lease) continue;
      if (await this.running(h.execution)) continue;
      if ((await this.dispatch(trainer, id)).dropped) dead.push(id);
    }
    return dead;
  }

  private grantOf(trainer: string, h: Holder): SlotGrant {
    return { trainer, slot: h.slot, server: serverFor(this.d.config.trainers[trainer], h.slot), granted_at: new Date(h.since).toISOString() };
  }

  /**
   * Wakes the granted waiters, in service order (the first granted starts first), then takes
   * them out of the queue; a crash in between leaves an item the holder check skips.
   */
  private async wake(trainer: string, picks: Waiter[], slots: Slots): Promise<void> {
    const gone: Waiter[] = [];
    // Who leaves the queue, with the token it is left with: the woken and the gone.
    const leaving: Array<{ w: Waiter; token: string }> = [];
    for (const w of picks) {
      const grant = this.grantOf(trainer, slots.holders[w.training_id]!);
      let token: string | null = w.token;
      if (!token || !(await this.signal(token, grant))) {
        // The token was read before the grant was written: the waiter may have joined or
        // renewed it since, and read the slots before that write. Its token now is current
        // (a join after this read finds the slot itself): without this, it would sleep until
        // its next poll (timeouts.queue_poll_seconds).
        token = await this.items.tokenOf(trainer, w.sk);
        // No token yet: its execution has not reached the wait; it finds the slot there.
        if (token === '') continue;
        if (token === null || token === w.token || !(await this.signal(token, grant))) {
          // Not woken and not running: its execution ended while it waited.
          if (!(await this.running(w.execution))) {
            gone.push(w);
            if (token) leaving.push({ w, token });
          }
          continue;
        }
      }
      leaving.push({ w, token });
    }
    await Promise.all(leaving.map(({ w, token }) => this.items.deleteWait({ id: w.training_id, trainer, created_at: w.sk.split('#')[1]!, owner: w.owner }, token)));
    // Their slots go on to the next waiters.
    for (const w of gone) await this.dispatch(trainer, w.training_id);
  }

  /** Completes a wait task; false when its token is closed. */
  private async signal(token: string, grant: SlotGrant): Promise<boolean> {
    try {
      await this.d.sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(grant) }));
      return true;
    } catch (e) {
      if (CLOSED_TOKEN.has((e as Error).name)) return false;
      throw e;
    }
  }

  private async running(executionArn: string): Promise<boolean> {
    try {
      const out = await this.d.sfn.send(new DescribeExecutionCommand({ executionArn }));
      return out.status === 'RUNNING';
    } catch (e) {
      if ((e as Error).name === 'ExecutionDoesNotExist') return false;
      throw e;
    }
  }
}

/** Full jitter, a few milliseconds growing: conflicts are brief (one item, short writes). */
const backoff = (attempt: number) => new Promise((r) => setTimeout(r, Math.random() * Math.min(5 * 2 ** attempt, 200)));
