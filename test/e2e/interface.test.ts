/**
 * Local mode's interface: bad input, auth, restart on the same data directory, the OCI-layout
 * path of a machine without a registry, signals, a run resumed after a kill, and `--demo`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceDataZip } from '#infra/local/demo';
import { REGISTRY_BIN } from '#infra/local/ecr';
import { inspectImage } from '#test-helpers/images';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';

const INPUT = { instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', max_train_steps: 10 };
const FAST = { trainers: { demo: { backend: 'demo', steps_per_second: 50 } } };
const terminal = (s: string) => ['succeeded', 'failed', 'canceled'].includes(s);

let receiver: Awaited<ReturnType<typeof startReceiver>>;
beforeAll(async () => {
  receiver = await startReceiver();
  receiver.serve('/person.zip', await instanceDataZip(1));
});
afterAll(() => receiver?.stop());

const finished = (local: Local, id: string) =>
  waitFor(`training ${id}`, async () => {
    const r = await local.api('GET', `/v1/trainings/${id}`);
    return terminal(r.json.status) ? r.json : null;
  });

describe('bad input and auth', () => {
  let local: Local;
  beforeAll(async () => {
    local = await startLocal({ config: FAST, registry: process.env.DREAMBOOTH_TEST_REGISTRY });
  });
  afterAll(() => local?.stop());

  const valid = () => ({ input: { ...INPUT, instance_data: `${receiver.base}/person.zip` }, trainer_version: 'demo', model: 'acme/m' });
  const cases: [string, () => unknown, number, RegExp][] = [
    ['malformed JSON', () => '{"input": ', 400, /not valid JSON/],
    ['an array body', () => '[]', 400, /JSON object/],
    ['an unknown field', () => ({ ...valid(), colour: 'red' }), 400, /unknown field: colour/],
    ['a missing model', () => ({ ...valid(), model: undefined }), 400, /model: is required/],
    ['an invalid model', () => ({ ...valid(), model: 'Acme/Has Space' }), 400, /model: must be owner\/name/],
    ['input that is not an object', () => ({ ...valid(), input: 'hello' }), 400, /input: must be a JSON object/],
    ['an unknown trainer', () => ({ ...valid(), trainer_version: 'nope' }), 400, /trainer_version: unknown trainer nope; configured trainers: demo/],
    // Checked at submit against the demo trainer's schema, as Replicate checks a version's inputs.
    ['an input without class_prompt', () => ({ ...valid(), input: { ...valid().input, class_prompt: undefined } }), 422, /^input\.class_prompt: field required/],
    ['an input with a string for an integer', () => ({ ...valid(), input: { ...valid().input, max_train_steps: 'ten' } }), 422, /^input\.max_train_steps: value type "string" is invalid\. Expected "integer"/],
    ['an input outside the maximum', () => ({ ...valid(), input: { ...valid().input, max_train_steps: 1_000_000 } }), 422, /^input\.max_train_steps: .*100000/],
    ['an unknown template digest', () => ({ ...valid(), template_version: 'f'.repeat(64) }), 400, /template_version: no manifest sha256:f{64} in any catalog template/],
    ['notes too long', () => ({ ...valid(), notes: 'x'.repeat(10_001) }), 400, /notes: must be at most 10000 characters/],
    ['a non-http webhook', () => ({ ...valid(), webhook_completed: 'ftp://example.com/x' }), 400, /webhook_completed: must be an http/],
    ['a private webhook', () => ({ ...valid(), webhook_completed: 'http://10.0.0.7/hook' }), 400, /webhook_completed: /],
    ['a metadata-service instance_data', () => ({ ...valid(), input: { ...INPUT, instance_data: 'http://169.254.169.254/latest' } }), 400, /input\.instance_data: /],
    ['a body over 1 MiB', () => ({ ...valid(), input: { ...INPUT, blob: 'x'.repeat(1024 * 1024) } }), 413, /exceeds 1048576 bytes/],
  ];
  it.each(cases)('refuses %s with a JSON detail', async (_name, body, status, detail) => {
    const before = (await local.api('GET', '/v1/trainings')).json.results.length;
    const res = await local.api('POST', '/v1/trainings', body());
    expect(res.status).toBe(status);
    expect(res.json.status).toBe(status);
    expect(res.json.detail).toMatch(detail);
    // Nothing was started.
    expect((await local.api('GET', '/v1/trainings')).json.results.length).toBe(before);
  });

  it('answers 401 without a valid token, and accepts the seed\'s Token scheme', async () => {
    expect((await local.api('GET', '/v1/trainings', undefined, { authorization: '' })).status).toBe(401);
    expect((await local.api('GET', '/v1/trainings', undefined, { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await local.api('GET', '/v1/trainings', undefined, { authorization: `Token ${local.token}` })).status).toBe(200);
  });

  it('404s unknown trainings and versions', async () => {
    expect((await local.api('GET', '/v1/trainings/aaaaaaaaaaaaaaaaaaaaaaaaaa')).status).toBe(404);
    expect((await local.api('GET', `/v1/models/acme/m/versions/${'a'.repeat(64)}`)).status).toBe(404);
  });

  it('lists the configured trainers by their Trainings API coordinates, and the route built from them works', async () => {
    const res = await local.api('GET', '/v1/trainers');
    expect(res.json.next).toBeNull();
    const demo = res.json.results.find((t: { key: string }) => t.key === 'demo');
    expect(demo).toMatchObject({ owner: 'dreambooth', name: 'demo-trainer', version: 'demo', model: 'dreambooth/demo-trainer', backend: 'demo' });
    expect(demo.trainings_url).toBe(`${local.url}/v1/models/${demo.owner}/${demo.name}/versions/${demo.version}/trainings`);
    // A body the route refuses (no destination) proves the route exists: 400, not 404.
    const created = await local.api('POST', `/v1/models/${demo.owner}/${demo.name}/versions/${demo.version}/trainings`, { input: {} });
    expect(created.status, JSON.stringify(created.json)).toBe(400);
    expect(created.json.detail).toMatch(/destination/);
    // The same coordinates show the trainer with its input schema.
    const one = await local.api('GET', `/v1/trainers/${demo.owner}/${demo.name}`);
    expect(one.status).toBe(200);
    expect(one.json).toMatchObject({ key: 'demo', input_schema_source: 'the demo trainer', input_schema: { required: ['instance_prompt', 'class_prompt', 'instance_data'] } });
  });
});

describe('restart, signals and the OCI layout', { timeout: 150_000 }, () => {
  it('keeps trainings and versions across a restart, and stops every process it started', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'dreambooth-restart-'));
    const first = await startLocal({ config: FAST, registry: 'none', dataDir });
    const created = await first.api('POST', '/v1/trainings', {
      input: { ...INPUT, instance_data: `${receiver.base}/person.zip` },
      trainer_version: 'demo',
      model: 'acme/layout',
    });
    const done = await finished(first, created.json.id);
    expect(done.status).toBe('succeeded');
    const version = (await first.api('GET', `/v1/models/acme/layout/versions/${done.version}`)).json;
    expect(version.image).toMatch(/^oci:.+:[a-z0-9]+$/);
    expect((await inspectImage(version.image)).lastLayerFiles).toContain('src/weights/model_index.json');

    expect(await first.stop('SIGTERM')).toBe(143);

    const second = await startLocal({ config: FAST, registry: 'none', dataDir, token: first.token });
    try {
      expect((await second.api('GET', `/v1/trainings/${created.json.id}`)).json).toMatchObject({ status: 'succeeded', version: done.version });
      expect((await second.api('GET', `/v1/models/acme/layout/versions/${done.version}`)).json.image).toBe(version.image);
    } finally {
      await second.stop();
    }
  });

  it('stops every process it started on SIGINT and SIGTERM', async () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      // No --registry: local mode starts Debian's docker-registry as its child.
      const local = await startLocal({ config: FAST });
      const children = childPids(local.proc.pid!);
      if (existsSync(REGISTRY_BIN)) expect(children.length).toBeGreaterThan(0);
      expect(await local.stop(signal)).toBe(signal === 'SIGINT' ? 130 : 143);
      await waitFor('children to exit', async () => children.every((pid) => !alive(pid)), 10_000);
    }
  });

  it('resumes a training local mode was killed during: its demo run starts again, and it can still be canceled', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'dreambooth-killed-'));
    const first = await startLocal({ config: FAST, dataDir, registry: process.env.DREAMBOOTH_TEST_REGISTRY });
    const created = await first.api('POST', '/v1/trainings', {
      input: { ...INPUT, max_train_steps: 100_000, instance_data: `${receiver.base}/person.zip` },
      trainer_version: 'demo',
      model: 'acme/killed',
      webhook_completed: `${receiver.base}/hook?killed=1`,
    });
    await waitFor('processing', async () => (await first.api('GET', `/v1/trainings/${created.json.id}`)).json.status === 'processing');
    const children = childPids(first.proc.pid!);
    await first.stop('SIGKILL');
    // Even a killed local mode leaves no process behind (its registry dies with it).
    await waitFor('children of the killed process to exit', async () => children.every((pid) => !alive(pid)), 10_000);
    const second = await startLocal({ config: FAST, dataDir, token: first.token, registry: process.env.DREAMBOOTH_TEST_REGISTRY });
    try {
      expect(second.output()).toMatch(/resumed: +1 executions \(1 trainings, 0 predictions\)/);
      // The demo trainer starts the run again: its logs begin anew.
      await waitFor('the run started again', async () => {
        const t = (await second.api('GET', `/v1/trainings/${created.json.id}`)).json;
        return t.status === 'processing' && /Steps: \d+\/100000/.test(t.logs ?? '') && (t.logs.match(/Downloading instance_data/g) ?? []).length === 1;
      });
      expect((await second.api('POST', `/v1/trainings/${created.json.id}/cancel`)).status).toBe(200);
      const hook = await waitFor('webhook', async () => receiver.hooks.find((h) => h.json?.id === created.json.id && h.json?.status === 'canceled'));
      expect(hook.json.status).toBe('canceled');
    } finally {
      await second.stop();
    }
  });

  it('npm start -- --demo runs one training end to end and exits 0', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'dreambooth-demo-'));
    const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
      // The README's command itself, so its flags and what it prints are what a user gets.
      const p = spawn('npm', ['start', '--', '--demo'], {
        env: { ...process.env, PORT: '0', DREAMBOOTH_DATA_DIR: dataDir },
      });
      let text = '';
      p.stdout.on('data', (c) => (text += c));
      p.stderr.on('data', (c) => (text += c));
      p.on('exit', (code) => resolve({ code, text }));
    });
    expect(out.text).toMatch(/token: +r8_[0-9a-f]{40} +\(generated/);
    expect(out.text).toContain('signature verified');
    expect(out.text).toMatch(/image +\S+@sha256:[0-9a-f]{64}|image +oci:/);
    expect(out.code).toBe(0);
    // No SDK Node-version warning on any Node local mode runs on; below 22, one line of its own.
    expect(out.text).not.toContain('NodeVersionSupportWarning');
    expect(out.text.includes('Node 22 is the baseline')).toBe(Number(process.versions.node.split('.')[0]) < 22);
  });
});

function childPids(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
