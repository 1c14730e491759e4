/** The order the trainer queue serves its waiters in, and a waiter's place in it. */
import type { Slots, Waiter } from './items.ts';

/**
 * The order waiters are served in: round-robin between owners (the owner served longest ago
 * goes first; one never served before anyone), FIFO within an owner. Round-robin rather than
 * a per-owner cap: a cap leaves slots idle when one owner is alone, round-robin never does.
 */
export function serviceOrder(waiters: Waiter[], served: Record<string, number>): Waiter[] {
  const byOwner = new Map<string, Waiter[]>();
  for (const w of [...waiters].sort((a, b) => (a.sk < b.sk ? -1 : 1))) {
    byOwner.set(w.owner, [...(byOwner.get(w.owner) ?? []), w]);
  }
  const last = new Map([...byOwner.keys()].map((o) => [o, served[o] ?? -1]));
  const out: Waiter[] = [];
  let tick = Math.max(0, ...Object.values(served)) + 1;
  while (byOwner.size) {
    let best: string | undefined;
    for (const owner of byOwner.keys()) {
      const a = last.get(owner)!;
      const b = best === undefined ? Infinity : last.get(best)!;
      // Ties (owners never served) go to the one whose head waited longest: plain FIFO.
      if (a < b || (a === b && byOwner.get(owner)![0]!.sk < byOwner.get(best!)![0]!.sk)) best = owner;
    }
    const queue = byOwner.get(best!)!;
    out.push(queue.shift()!);
    last.set(best!, tick++);
    if (!queue.length) byOwner.delete(best!);
  }
  return out;
}

/** How many are served before training `id` among the waiters that hold no slot. */
export function positionIn(waiting: Waiter[], slots: Slots, id: string): number {
  const order = serviceOrder(waiting.filter((w) => !slots.holders[w.training_id]), slots.served);
  const at = order.findIndex((w) => w.training_id === id);
  return at < 0 ? order.length : at;
}
