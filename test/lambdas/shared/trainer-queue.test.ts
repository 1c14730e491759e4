/**
 * The trainer queue against real dynalite and real executions: each member is an execution
 * that waits in "Wait for a free slot" (a real task token) and then holds its slot in "Hold the
 * slot" until it is released or killed. A seeded random run of create / finish / fail / cancel /
 * kill, several at once, checks after every batch that no slot is lost or double-held.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StopExecutionCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil, startLocalAws, type LocalAws } from '#infra/local/aws';
import * as aws from '#shared/aws';
import { newTrainingId } from '#shared/ids';
import { serviceOrder, TrainerQueue, type QueueMember, type SlotGrant, type Slots, type Waiter } from '#shared/trainer-queue/index';
import { Store } from '#shared/store';
import { testConfig } from '#test-helpers/aws-local';
import { testTable } from '#test-helpers/table';

const callback = (next: string | null) => ({
  Type: 'Task',
  Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
  Parameters: { FunctionName: 'queue', Payload: { 'task_token.$': '$$.Task.Token', 'grant.$': '$.grant' } },
  TimeoutSeconds: 600,
  ...(next ? { ResultPath: '$.grant', Next: next } : { End: true }),
});
const definition = { StartAt: 'Wait', States: { Wait: callback('Hold'), Hold: callback(null) } };

interface Member extends QueueMember {
  executionArn: string;
  state: 'waiting' | 'holding' | 'released' | 'killed';
  grant?: SlotGrant;
  /** What its first turn in the wait said about its place. */
  ahead?: number | null;
}

let local: LocalAws;
let dataDir: string;
let offsetMs = 0;
const waitTokens = new Map<string, string>();
const grants = new Map<string, SlotGrant>();
const config = testConfig({
  trainers: { pool: { backend: 'cog', urls: ['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b'], concurrency: 1 } },
  // A short poll with a deadline to match (an execution's history ends at 25,000 events).
  timeouts: { queue_poll_seconds: 30, queue_seconds: 6 * 3600 },
});
let queue: TrainerQueue;
let store: Store;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'queue-'));
  local = await startLocalAws({
    dataDir,
    table: testTable(),
    definition,
    taskHandlers: {
      Wait: async (_i, ctx) => void waitTokens.set(ctx.executionName, ctx.taskToken!),
      Hold: async (input, ctx) => void grants.set(ctx.executionName, (input as { Payload: { grant: SlotGrant } }).Payload.grant),
    },
    secrets: {},
    lambdas: {},
  });
  Object.assign(process.env, local.env);
  store = new Store(aws.ddb(), local.table);
  queue = new TrainerQueue({ store, sfn: aws.sfn(), config, now: () => new Date(Date.now() + offsetMs) });
}, 60_000);

afterAll(async () => {
  await local?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const slotsItem = async (trainer: string): Promise<Slots> =>
  ((await store.db.send(new GetCommand({ TableName: local.table, Key: { pk: `QUEUE#${trainer}`, sk: 'SLOTS' }, ConsistentRead: true }))).Item as Slots) ??
  { version: 0, holders: {}, served: {}, grants: 0 };

let clock = 0;
async function join_(owner: string): Promise<Member> {
  const id = newTrainingId();
  // Distinct, increasing creation times: FIFO order is creation order.
  const created_at = new Date(Date.UTC(2026, 0, 1) + ++clock).toISOString();
  const out = await aws.sfn().send(new StartExecutionCommand({ stateMachineArn: local.stateMachineArn, name: id, input: '{"grant":null}' }));
  const token = await pollUntil(() => waitTokens.get(id), { what: 'the wait task' });
  const m: Member = { id, owner, trainer: 'pool', created_at, executionArn: out.executionArn!, state: 'waiting' };
  m.ahead = (await queue.acquire(m, token, m.executionArn)).ahead;
  return m;
}

const stop = (m: Member) => aws.sfn().send(new StopExecutionCommand({ executionArn: m.executionArn }));

/** A deterministic PRNG, so a failure can be replayed from its seed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

/** Waits until every grant has reached its execution, then checks the slots item against the members. */
async function settle(members: Member[]): Promise<Slots> {
  for (let i = 0; i < 100; i++) {
    const slots = await slotsItem('pool');
    let pending = false;
    for (const m of members) {
      const h = slots.holders[m.id];
      if (m.state === 'waiting' && h) {
        if (grants.has(m.id)) {
          m.state = 'holding';
          m.grant = grants.get(m.id);
        } else pending = true;
      }
    }
    if (!pending) return slots;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('a granted member never got its grant');
}

function checkInvariants(slots: Slots, members: Member[], capacity: number) {
  const holders = Object.entries(slots.holders);
  const slotNumbers = holders.map(([, h]) => h.slot);
  // Never double-held: each slot once, never beyond capacity.
  expect(new Set(slotNumbers).size).toBe(slotNumbers.length);
  expect(holders.length).toBeLessThanOrEqual(capacity);
  for (const n of slotNumbers) expect(n).toBeLessThan(capacity);
  // Never lost: the holders are exactly the members holding (a killed holder until reclaimed).
  const byId = new Map(members.map((m) => [m.id, m]));
  for (const [id] of holders) expect(['holding', 'killed']).toContain(byId.get(id)?.state);
  // A slot granted to a waiter already killed is handed on at once, not left to the lease.
  for (const [id] of holders) expect(byId.get(id)?.state === 'killed' && !grants.has(id), `dead waiter ${id} holds a slot`).toBe(false);
  for (const m of members.filter((x) => x.state === 'holding')) {
    expect(slots.holders[m.id]?.slot, `member ${m.id} holds its slot`).toBe(m.grant?.slot);
  }
  // Work-conserving: nobody alive waits while a slot is free.
  if (members.some((m) => m.state === 'waiting')) expect(holders.length).toBe(capacity);
}

describe('service order', () => {
  const w = (owner: string, n: number): Waiter => ({ training_id: `${owner}${n}`, owner, execution: '', token: '', enqueued_at: 0, sk: `WAIT#${String(n).padStart(4, '0')}` });
  it('is FIFO for one owner and alternates between owners, the one served longest ago first', () => {
    const burst = Array.from({ length: 5 }, (_, i) => w('a', i));
    expect(serviceOrder(burst, {}).map((x) => x.training_id)).toEqual(['a0', 'a1', 'a2', 'a3', 'a4']);
    const order = serviceOrder([...burst, w('b', 10)], { a: 7 }).map((x) => x.training_id);
    expect(order).toEqual(['b10', 'a0', 'a1', 'a2', 'a3', 'a4']);
    expect(serviceOrder([w('a', 1), w('a', 2), w('b', 3), w('b', 4)], {}).map((x) => x.training_id)).toEqual(['a1', 'b3', 'a2', 'b4']);
  });
});

describe('trainer queue on dynalite', () => {
  it('a burst is served in FIFO order, two at a time, and a release wakes the next at once', async () => {
    const members: Member[] = [];
    for (let i = 0; i < 5; i++) members.push(await join_('fifo'));
    let slots = await settle(members);
    expect(members.map((m) => m.state)).toEqual(['holding', 'holding', 'waiting', 'waiting', 'waiting']);
    expect(members.slice(0, 2).map((m) => m.grant!.server).sort()).toEqual(['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b']);
    expect((await queue.status('pool')).queued).toBe(3);
    const t0 = Date.now();
    await queue.release(members[0]!);
    members[0]!.state = 'released';
    await stop(members[0]!);
    slots = await settle(members);
    expect(members[2]!.state).toBe('holding');
    // Woken by its token, not a poll: well below the 30 s poll interval.
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(members[2]!.grant!.slot).toBe(members[0]!.grant!.slot);
    checkInvariants(slots, members, 2);
    for (const m of members) {
      await queue.release(m);
      m.state = 'released';
      await stop(m);
    }
    await settle(members);
    expect(await queue.status('pool')).toEqual({ capacity: 2, busy: 0, queued: 0 });
  });

  it('another owner waits for one run at most behind a burst', async () => {
    const burst: Member[] = [];
    for (let i = 0; i < 6; i++) burst.push(await join_('burst'));
    // Its place as it joins: next (round-robin), not behind the burst's four waiting.
    const other = await join_('single');
    expect(other.ahead).toBe(0);
    expect(burst.map((m) => m.ahead)).toEqual([0, 0, 0, 1, 2, 3]);
    await settle([...burst, other]);
    await queue.release(burst[0]!);
    burst[0]!.state = 'released';
    await settle([...burst, other]);
    expect(other.state).toBe('holding');
    for (const m of [...burst, other]) {
      await queue.release(m);
      await stop(m).catch(() => undefined);
    }
  });

  it('wakes a waiter whose token changed between the read that picked it and the grant', async () => {
    // A queue whose next read of the waiting list lets something happen before its grant is
    // written: here, the waiter renewing its token (its wait went round the loop) and seeing
    // every slot still taken. Real dynalite, real executions; only the interleaving is forced.
    let between: (() => Promise<unknown>) | null = null;
    const db = store.db;
    const send = async (command: Parameters<typeof db.send>[0]) => {
      const out = await db.send(command as never);
      if (between && command instanceof QueryCommand && String(command.input.KeyConditionExpression).includes('begins_with')) {
        const run = between;
        between = null;
        await run();
      }
      return out;
    };
    const racing = new TrainerQueue({ store: new Store({ send } as never, local.table), sfn: aws.sfn(), config, now: () => new Date(Date.now() + offsetMs) });
    const holders = [await join_('race'), await join_('race')];
    await settle(holders);
    // The waiter's previous wait: a token closed since (its execution, another one, stopped).
    const previous = await join_('race');
    await stop(previous);
    await queue.release(previous);
    const id = newTrainingId();
    const out = await aws.sfn().send(new StartExecutionCommand({ stateMachineArn: local.stateMachineArn, name: id, input: '{"grant":null}' }));
    const token = await pollUntil(() => waitTokens.get(id), { what: 'the wait task' });
    const w: Member = { id, owner: 'race', trainer: 'pool', created_at: new Date(Date.UTC(2026, 0, 1) + ++clock).toISOString(), executionArn: out.executionArn!, state: 'waiting' };
    expect((await queue.acquire(w, waitTokens.get(previous.id)!, w.executionArn)).grant).toBeNull();
    between = () => queue.acquire(w, token, w.executionArn);
    await racing.release(holders[0]!);
    expect(between).toBeNull();
    // Woken through the token it has now: not left to its next poll.
    const grant = await pollUntil(() => grants.get(id), { what: 'the waiter to get its grant' });
    expect(grant.slot).toBe(holders[0]!.grant!.slot);
    for (const m of [...holders, previous, w]) {
      await queue.release(m);
      await stop(m).catch(() => undefined);
    }
  });

  it.each([1, 2, 3, 4, 5])('random create / finish / fail / cancel / kill, seed %i: no slot lost or double-held', async (seed) => {
    const rand = prng(seed);
    const pick = <T,>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
    const members: Member[] = [];
    const owners = ['ann', 'ben', 'cat'];
    const alive = (s: Member['state']) => members.filter((m) => m.state === s);
    for (let batch = 0; batch < 25; batch++) {
      const ops: Promise<unknown>[] = [];
      for (let k = 0; k < 3; k++) {
        const r = rand();
        const holder = pick(alive('holding'));
        const waiter = pick(alive('waiting'));
        if (r < 0.4 || members.length < 3) ops.push(join_(pick(owners)!).then((m) => members.push(m)));
        else if (r < 0.6 && holder) {
          // Success or failure: the workflow frees the slot, then the execution ends.
          holder.state = 'released';
          ops.push(queue.release(holder).then(() => stop(holder)));
        } else if (r < 0.7 && waiter) {
          // Cancel while queued: the API leaves the queue and stops the execution.
          waiter.state = 'released';
          ops.push(stop(waiter).then(() => queue.release(waiter)));
        } else if (r < 0.8 && holder) {
          // Killed: the execution ends and nothing of ours runs.
          holder.state = 'killed';
          ops.push(stop(holder));
        } else if (r < 0.88 && waiter) {
          waiter.state = 'killed';
          ops.push(stop(waiter));
        } else {
          // Time passes beyond the lease: the slots of ended executions are reclaimed.
          offsetMs += 31_000;
          ops.push(queue.reclaim('pool'));
        }
      }
      await Promise.all(ops);
      const slots = await settle(members);
      // A killed waiter that was granted never got it: its slot must be handed on.
      checkInvariants(slots, members, 2);
    }
    // Everything ends: finish the holders, stop the waiters, reclaim the killed.
    offsetMs += 31_000;
    await queue.reclaim('pool');
    for (let round = 0; round < 50 && members.some((m) => m.state === 'waiting' || m.state === 'holding'); round++) {
      for (const m of [...alive('holding'), ...alive('waiting')]) {
        m.state = 'released';
        await queue.release(m);
        await stop(m).catch(() => undefined);
      }
      await settle(members);
    }
    offsetMs += 31_000;
    await queue.reclaim('pool');
    const end = await slotsItem('pool');
    expect(end.holders).toEqual({});
    expect((await queue.status('pool')).queued).toBe(0);
  }, 120_000);
});
