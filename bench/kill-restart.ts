/**
 * Local mode's durability, measured as issue reports measured it: 200 trainings posted at once by
 * two owners (100 each, each with a token of its own) to a demo trainer with two slots; local
 * mode killed with SIGKILL 30 s later and started again on the same data directory; then every
 * training followed to its end. Prints the statuses before the kill and at the end, and the
 * seconds the restart took to answer. Exits 1 unless all 200 succeeded.
 *
 *   npx tsx bench/kill-restart.ts [--count 200] [--after 30]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { instanceDataZip } from '../infra/local/demo.ts';
import { startLocal, startReceiver, waitFor, type Local } from '../test/helpers/local-mode.ts';

const { values } = parseArgs({ options: { count: { type: 'string', default: '200' }, after: { type: 'string', default: '30' } } });
const COUNT = Number(values.count);
const CONFIG = { trainers: { demo: { backend: 'demo', steps_per_second: 100, concurrency: 2 } }, limits: { page_size: 1000 } };
const OWNERS = ['acme', 'bob'];

const tally = (ts: { status: string }[]) => {
  const n: Record<string, number> = {};
  for (const t of ts) n[t.status] = (n[t.status] ?? 0) + 1;
  return n;
};

async function trainings(local: Local, bearer: string): Promise<{ id: string; status: string; error: string | null }[]> {
  const res = await fetch(`${local.url}/v1/trainings`, { headers: { authorization: `Bearer ${bearer}` } });
  return ((await res.json()) as { results: { id: string; status: string; error: string | null }[] }).results;
}

/** COUNT trainings, alternating owners, each posted with its owner's token, all at once. */
async function postAll(local: Local, tokens: Record<string, string>, base: string): Promise<void> {
  await Promise.all(
    Array.from({ length: COUNT }, async (_, i) => {
      const owner = OWNERS[i % OWNERS.length]!;
      const res = await fetch(`${local.url}/v1/trainings`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tokens[owner]}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          input: {
            instance_prompt: 'a photo of a cjw person',
            class_prompt: 'a photo of a person',
            instance_data: `${base}/person.zip`,
            max_train_steps: 20,
          },
          trainer_version: 'demo',
          model: `${owner}/kill-${i}`,
        }),
      });
      if (res.status !== 201) throw new Error(`POST /v1/trainings answered ${res.status}: ${await res.text()}`);
    }),
  );
}

async function main() {
  const dataDir = await mkdtemp(join(tmpdir(), 'dreambooth-kill-restart-'));
  const receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(1));
  const tokens: Record<string, string> = {};
  for (const owner of OWNERS) {
    const out = await promisify(execFile)('npx', ['tsx', 'bin/new-token.ts', '--data-dir', dataDir, '--name', owner, '--owners', owner]);
    tokens[owner] = /(r8_[0-9a-f]{40})/.exec(out.stdout)![1]!;
  }
  const all = async (local: Local) => (await Promise.all(OWNERS.map((o) => trainings(local, tokens[o]!)))).flat();
  try {
    const first = await startLocal({ dataDir, config: CONFIG, registry: 'none' });
    await postAll(first, tokens, receiver.base);
    await new Promise((r) => setTimeout(r, Number(values.after) * 1000));
    console.log(`before the kill: ${JSON.stringify(tally(await all(first)))}`);
    await first.stop('SIGKILL');

    const t0 = performance.now();
    const second = await startLocal({ dataDir, config: CONFIG, registry: 'none', token: first.token });
    await waitFor(
      'an answer',
      async () => (await fetch(`${second.url}/v1/trainings`, { headers: { authorization: `Bearer ${tokens.acme}` } })).status === 200,
      60_000,
    );
    console.log(
      `restart answered after ${((performance.now() - t0) / 1000).toFixed(1)} s; ${second.output().match(/resumed:.*$/m)?.[0] ?? 'no resumed line'}`,
    );
    const end = await waitFor(
      'every training to end',
      async () => {
        const ts = await all(second);
        return ts.every((t) => ['succeeded', 'failed', 'canceled'].includes(t.status)) ? ts : null;
      },
      1_800_000,
    );
    console.log(`after the restart: ${JSON.stringify(tally(end))}`);
    for (const t of end.filter((t) => t.status !== 'succeeded').slice(0, 5)) console.log(`  ${t.id} ${t.status}: ${t.error}`);
    await second.stop();
    process.exitCode = end.length === COUNT && end.every((t) => t.status === 'succeeded') ? 0 : 1;
  } finally {
    await receiver.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
