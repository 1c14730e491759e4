/**
 * `npm run token` against local mode's data directory, as a user runs it (another process,
 * without local mode's environment): the added token is accepted beside the local one after a
 * restart (a running local mode honours it once its secret cache expires), and a revoked one
 * is refused.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { startLocal, type Local } from '#test-helpers/local-mode';

const dataDir = mkdtempSync(join(tmpdir(), 'dreambooth-tokens-'));
const token = `local-${Math.random().toString(36).slice(2)}`;
let local: Local | undefined;
afterAll(async () => {
  await local?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const run = async (...args: string[]) => {
  const env = { ...process.env };
  delete env.DREAMBOOTH_API_TOKEN;
  return (await promisify(execFile)('npx', ['tsx', 'bin/new-token.ts', '--data-dir', dataDir, ...args], { env })).stdout;
};
const status = async (l: Local, bearer: string) => (await fetch(`${l.url}/v1/trainings`, { headers: { authorization: `Bearer ${bearer}` } })).status;
const restart = async () => {
  await local?.stop();
  local = await startLocal({ dataDir, token, registry: 'none' });
  return local;
};

it('adds a token beside the local one and revokes it, across restarts', async () => {
  await restart();
  const ci = /shown once[^:]*: (r8_[0-9a-f]{40})/.exec(await run('--name', 'ci', '--owners', 'acme'))![1]!;
  let l = await restart();
  expect(await status(l, ci)).toBe(200);
  expect(await status(l, token)).toBe(200);
  await run('--revoke', 'ci');
  l = await restart();
  expect(await status(l, ci)).toBe(401);
  expect(await status(l, token)).toBe(200);
}, 240_000);
