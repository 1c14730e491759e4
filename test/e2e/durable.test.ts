/**
 * Local mode is as durable as Step Functions: a burst of trainings on a two-slot demo trainer,
 * local mode killed (SIGKILL) or stopped (SIGTERM) mid-burst and started again on the same data
 * directory (after the kill, another program holds the demo trainers' ports meanwhile). Every
 * training succeeds, no model gets two versions, each training's completion webhook arrives (one
 * webhook-id however often it is sent), and a new training succeeds after.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceDataZip } from '#infra/local/demo';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';

const BURST = 50;
// 20 steps at 100 per second: each run lasts a fraction of a second, the burst a minute or so.
const CONFIG = { trainers: { demo: { backend: 'demo', steps_per_second: 100, concurrency: 2 } } };
const INPUT = { instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', max_train_steps: 20 };
const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

let receiver: Awaited<ReturnType<typeof startReceiver>>;
beforeAll(async () => {
  receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(1));
});
afterAll(() => receiver?.stop());

interface Training {
  id: string;
  status: string;
  model: string;
  version: string | null;
  error: string | null;
}

/** Every training, following the pages. */
async function allTrainings(local: Local): Promise<Training[]> {
  const out: Training[] = [];
  let path: string | null = '/v1/trainings';
  while (path) {
    const page = (await local.api('GET', path)).json as { results: Training[]; next: string | null };
    out.push(...page.results);
    path = page.next ? page.next.slice(local.url.length) : null;
  }
  return out;
}

/** The ports the demo trainers' state files name (their last). */
function demoPorts(dataDir: string): number[] {
  const dir = join(dataDir, 'demo-trainers');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { port: number }).port);
}

/** Listens on each demo trainer's last port, as another program could. */
async function squat(dataDir: string): Promise<Server[]> {
  return Promise.all(
    demoPorts(dataDir).map(
      (port) =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer((socket) => socket.destroy());
          server.once('error', reject).listen(port, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
}

const count = (ts: Training[], status: string) => ts.filter((t) => t.status === status).length;

const post = (local: Local, model: string, hook: string) =>
  local.api('POST', '/v1/trainings', {
    input: { ...INPUT, instance_data: `${receiver.base}/person.zip` },
    trainer_version: 'demo',
    model,
    webhook_completed: `${receiver.base}${hook}`,
  });

describe.each(['SIGKILL', 'SIGTERM'] as const)('a burst of trainings across a %s and a restart', (signal) => {
  it('ends with every training succeeded, one version each, every webhook sent', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), `dreambooth-durable-${signal}-`));
    const first = await startLocal({ config: CONFIG, dataDir, registry: process.env.DREAMBOOTH_TEST_REGISTRY });
    const tag = `${signal.toLowerCase()}-${Date.now().toString(36)}`;
    const ids: string[] = [];
    try {
      for (let i = 0; i < BURST; i++) {
        const created = await post(first, `acme/${tag}-${i}`, `/durable/${tag}/${i}`);
        expect(created.status).toBe(201);
        ids.push(created.json.id);
      }
      // Mid-burst: some done, many still waiting in the queue.
      const before = await waitFor(
        'some trainings succeeded and many queued',
        async () => {
          const ts = await allTrainings(first);
          return count(ts, 'succeeded') >= 2 && count(ts, 'starting') >= BURST / 2 ? ts : null;
        },
        180_000,
      );
      expect(count(before, 'failed')).toBe(0);
    } finally {
      const code = await first.stop(signal);
      if (signal === 'SIGTERM') expect(code).toBe(143);
    }

    // After a kill, another process takes the demo trainers' ports (their state files name
    // them): the servers come back on other ports, and the runs pinned to the old ones follow.
    const squatters = signal === 'SIGKILL' ? await squat(dataDir) : [];
    const second = await startLocal({ config: CONFIG, dataDir, token: first.token, registry: process.env.DREAMBOOTH_TEST_REGISTRY });
    try {
      // The start banner's lines may reach us after its first (the one startLocal waits for).
      const banner = await waitFor(
        'the resumed line',
        async () => second.output().match(/resumed: +\d+ executions \(\d+ trainings, 0 predictions\)/),
        10_000,
      );
      expect(banner).toBeTruthy();
      // The servers did move: their state files name other ports now.
      const squatted = squatters.map((q) => (q.address() as AddressInfo).port);
      for (const port of demoPorts(dataDir)) expect(squatted).not.toContain(port);
      let last: Training[] = [];
      const after = await waitFor(
        'every training to end',
        async () => {
          last = (await allTrainings(second)).filter((t) => ids.includes(t.id));
          return last.length === BURST && last.every((t) => TERMINAL.has(t.status)) ? last : null;
        },
        300_000,
      ).catch(async (e: Error) => {
        // Say which trainings hung, where, and what local mode said about them.
        const stuck = last.filter((t) => !TERMINAL.has(t.status));
        const details = await Promise.all(
          stuck.map(async (t) => ({ ...t, logs: ((await second.api('GET', `/v1/trainings/${t.id}`)).json.logs ?? '').slice(-400) })),
        );
        const lines = second
          .output()
          .split('\n')
          .filter((l) => stuck.some((t) => l.includes(t.id)));
        throw new Error(`${e.message}: ${JSON.stringify({ found: last.length, stuck: details, lines: lines.slice(-40) }, null, 1)}`);
      });
      expect(after.filter((t) => t.status !== 'succeeded').map((t) => `${t.id} ${t.status}: ${t.error}`)).toEqual([]);

      // No training pushed a second version.
      for (let i = 0; i < BURST; i++) {
        const versions = (await second.api('GET', `/v1/models/acme/${tag}-${i}/versions`)).json.results as { id: string }[];
        expect(versions.map((v) => v.id)).toEqual([after.find((t) => t.model === `acme/${tag}-${i}`)!.version]);
      }

      // Each training's completion webhook arrived; a repeat carries the same webhook-id.
      for (const id of ids) {
        const hooks = await waitFor(`the webhook of ${id}`, async () => {
          const got = receiver.hooks.filter((h) => h.json?.id === id && h.json?.status === 'succeeded');
          return got.length ? got : null;
        });
        expect(new Set(hooks.map((h) => h.headers['webhook-id'])).size).toBe(1);
      }

      // And the restarted local mode takes new work.
      const next = await post(second, `acme/${tag}-after`, `/durable/${tag}/after`);
      const done = await waitFor('the training after the restart', async () => {
        const t = (await second.api('GET', `/v1/trainings/${next.json.id}`)).json as Training;
        return TERMINAL.has(t.status) ? t : null;
      });
      expect(done).toMatchObject({ status: 'succeeded' });
    } finally {
      await second.stop();
      for (const server of squatters) server.close();
    }
  }, 900_000);
});
