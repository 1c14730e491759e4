/**
 * The trainer queue's items in the trainings table. No transactions (dynalite has none), so
 * each fact lives in one item:
 * - `QUEUE#<trainer> / SLOTS`: who holds which slot, and when each owner was last served; every
 *   change is a conditional write on its `version` (optimistic locking).
 * - `QUEUE#<trainer> / WAIT#<created_at>#<id>`: one item per waiting training (its owner, its
 *   execution, the task token to wake it with). Joining the queue touches no shared item.
 * Every read is consistent: the queue's protocol (./index.ts) relies on reads after writes.
 */
import { DeleteCommand, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Store } from '../store.ts';

export interface Holder {
  slot: number;
  owner: string;
  execution: string;
  /** Epoch ms the slot was granted. */
  since: number;
}

export interface Slots {
  version: number;
  holders: Record<string, Holder>;
  /** Owner → the grant counter when they were last served (round-robin between owners). */
  served: Record<string, number>;
  grants: number;
}

export interface Waiter {
  training_id: string;
  owner: string;
  execution: string;
  token: string;
  /** Epoch ms of joining; the queue deadline counts from here. */
  enqueued_at: number;
  sk: string;
}

/** Who joins the queue: the parts of a training the queue needs. */
export interface QueueMember {
  id: string;
  owner: string;
  trainer: string;
  created_at: string;
}

export const memberOf = (t: QueueMember): QueueMember => ({ id: t.id, owner: t.owner, trainer: t.trainer, created_at: t.created_at });

const pk = (trainer: string) => `QUEUE#${trainer}`;
const SLOTS_SK = 'SLOTS';
const waitSk = (m: QueueMember) => `WAIT#${m.created_at}#${m.id}`;
const emptySlots = (): Slots => ({ version: 0, holders: {}, served: {}, grants: 0 });

/** Reads and writes of the queue's items; every decision about them is the queue's. */
export class QueueTable {
  constructor(private readonly store: Store) {}

  /** Puts the training in the queue without a token (idempotent: an existing item stays). */
  async putWaiter(m: QueueMember, execution: string, now: number): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.table,
        Item: { pk: pk(m.trainer), sk: waitSk(m), training_id: m.id, owner: m.owner, execution, token: '', enqueued_at: now },
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    ).catch((e: Error) => {
      if (e.name !== 'ConditionalCheckFailedException') throw e;
    });
  }

  /** Joins the queue or renews the token; `joined` when the item is new. */
  async join(m: QueueMember, token: string, execution: string, now: number): Promise<{ waiter: Waiter; joined: boolean }> {
    const out = await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { pk: pk(m.trainer), sk: waitSk(m) },
        UpdateExpression: 'SET training_id = :id, #owner = :owner, execution = :ex, #token = :token, enqueued_at = if_not_exists(enqueued_at, :now)',
        ExpressionAttributeNames: { '#owner': 'owner', '#token': 'token' },
        ExpressionAttributeValues: { ':id': m.id, ':owner': m.owner, ':ex': execution, ':token': token, ':now': now },
        ReturnValues: 'ALL_OLD',
      }),
    );
    const old = out.Attributes as Waiter | undefined;
    const waiter: Waiter = { training_id: m.id, owner: m.owner, execution, token, enqueued_at: old?.enqueued_at ?? now, sk: waitSk(m) };
    // New to the wait: no item yet, or the one the API put at creation (no token yet).
    return { waiter, joined: !old?.token };
  }

  /** Leaves the queue; with `token`, only if the item still carries that token (a renewed wait stays). */
  async deleteWait(m: QueueMember, token?: string): Promise<void> {
    try {
      await this.db.send(
        new DeleteCommand({
          TableName: this.table,
          Key: { pk: pk(m.trainer), sk: waitSk(m) },
          ...(token ? { ConditionExpression: '#token = :token', ExpressionAttributeNames: { '#token': 'token' }, ExpressionAttributeValues: { ':token': token } } : {}),
        }),
      );
    } catch (e) {
      if ((e as Error).name !== 'ConditionalCheckFailedException') throw e;
    }
  }

  /** Every waiting item of the trainer's queue, in key order. */
  async waiting(trainer: string): Promise<Waiter[]> {
    const out: Waiter[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const page = await this.db.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :wait)',
          ExpressionAttributeValues: { ':pk': pk(trainer), ':wait': 'WAIT#' },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      out.push(...((page.Items ?? []) as Waiter[]));
      start = page.LastEvaluatedKey;
    } while (start);
    return out;
  }

  /**
   * Waiters created before this one, all and its owner's, in one counting read of the queue's
   * front (a filtered count reports both what it read and what matched).
   */
  async countBefore(m: QueueMember): Promise<{ all: number; own: number }> {
    let all = 0;
    let own = 0;
    let start: Record<string, unknown> | undefined;
    do {
      const page = await this.db.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND sk BETWEEN :first AND :mine',
          FilterExpression: '#owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner' },
          ExpressionAttributeValues: { ':pk': pk(m.trainer), ':first': 'WAIT#', ':mine': waitSk(m), ':owner': m.owner },
          Select: 'COUNT',
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      all += page.ScannedCount ?? 0;
      own += page.Count ?? 0;
      start = page.LastEvaluatedKey;
    } while (start);
    // BETWEEN includes our own item.
    return { all: Math.max(0, all - 1), own: Math.max(0, own - 1) };
  }

  /** A waiter's token as it is now: '' when it has none yet, null when it left the queue. */
  async tokenOf(trainer: string, sk: string): Promise<string | null> {
    const out = await this.db.send(new GetCommand({ TableName: this.table, Key: { pk: pk(trainer), sk }, ConsistentRead: true }));
    return out.Item ? ((out.Item.token as string | undefined) ?? '') : null;
  }

  async readSlots(trainer: string): Promise<Slots> {
    const out = await this.db.send(new GetCommand({ TableName: this.table, Key: { pk: pk(trainer), sk: SLOTS_SK }, ConsistentRead: true }));
    if (!out.Item) return emptySlots();
    const { version, holders, served, grants } = out.Item as Slots;
    return { version, holders: holders ?? {}, served: served ?? {}, grants: grants ?? 0 };
  }

  /** The one write of the slots item: only over the version it was read at. */
  async writeSlots(trainer: string, read: Slots, next: Slots): Promise<boolean> {
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.table,
          Item: { pk: pk(trainer), sk: SLOTS_SK, ...next, version: read.version + 1 },
          ConditionExpression: read.version === 0 ? 'attribute_not_exists(pk)' : 'version = :v',
          ...(read.version === 0 ? {} : { ExpressionAttributeValues: { ':v': read.version } }),
        }),
      );
      return true;
    } catch (e) {
      if ((e as Error).name === 'ConditionalCheckFailedException') return false;
      throw e;
    }
  }

  private get db() {
    return this.store.db;
  }

  private get table() {
    return this.store.table;
  }
}
