/**
 * The fault suite: every failure mode, through local mode, with real receivers and a trainer
 * that misbehaves on request. Each case records its outcome; the table is printed at the end
 * (and kept in docs/reliability.md).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SFNClient, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callbackSecret, sha256Hex } from '#shared/ids';
import { instanceDataZip } from '#infra/local/demo';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';
import { tarball } from '#test-helpers/tars';
import { zip } from '#test-helpers/zips';
import { startFaultyTrainer, type Fault } from './trainer.ts';

const table: [string, string, string][] = [];
const row = (area: string, fault: string, outcome: string) => table.push([area, fault, outcome]);

let local: Local;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
let trainer: Awaited<ReturnType<typeof startFaultyTrainer>>;
const alice = `alice-${randomBytes(8).toString('hex')}`;
const bob = `bob-${randomBytes(8).toString('hex')}`;

beforeAll(async () => {
  receiver = await startReceiver(() => 200);
  receiver.serve('/person.zip', await instanceDataZip(1));
  const pipeline = [{ name: 'model_index.json', data: '{}' }, { name: 'unet/config.json', data: '{}' }];
  trainer = await startFaultyTrainer({
    slip: await zip([...pipeline, { name: '../out2/x', data: 'owned' }]),
    bomb: await zip([...pipeline, { name: 'unet/zeros.bin', data: Buffer.alloc(20 * 1024 * 1024) }]),
    'no-index': await zip([{ name: 'unet/config.json', data: '{}' }]),
    'no-vae': await zip([
      { name: 'model_index.json', data: JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'], safety_checker: [null, null] }) },
      { name: 'unet/config.json', data: '{}' },
    ]),
    symlink: await zip([...pipeline, { name: 'unet/link', data: '/etc/passwd', mode: 0o120777 }]),
    many: await zip([...pipeline, ...Array.from({ length: 100_000 }, (_, i) => ({ name: `f/${i}`, data: '', compress: false }))]),
    'dot-segment': await zip([...pipeline, { name: 'unet/./weights.bin', data: 'w' }]),
    'symlink.tar': await tarball([{ name: 'model_index.json', data: '{}' }, { name: 'unet/link', type: 'symlink', linkname: '/etc/passwd' }]),
    'slip.tar': await tarball([{ name: 'model_index.json', data: '{}' }, { name: '../out2/x', data: 'owned' }]),
    'bomb.tar.gz': await tarball([{ name: 'model_index.json', data: '{}' }, { name: 'zeros.bin', data: Buffer.alloc(20 * 1024 * 1024) }], { gzip: true }),
    'lora.safetensors': Buffer.from('safetensors weights'),
    'fake.tar': Buffer.from('this is not a tar'),
  });
  local = await startLocal({
    registry: process.env.DREAMBOOTH_TEST_REGISTRY,
    config: {
      // The faulty trainer runs any number at once; `slow` (one slot) is the queue's.
      trainers: {
        faulty: { backend: 'cog', url: trainer.url, concurrency: 20 },
        demo: { backend: 'demo', steps_per_second: 100 },
        slow: { backend: 'demo', steps_per_second: 100 },
      },
      timeouts: { callback_poll_seconds: 3, callback_heartbeat_seconds: 2, training_seconds: 8, queue_seconds: 5, queue_poll_seconds: 2 },
      webhooks: { timeout_seconds: 2, retry_interval_seconds: 1, retry_backoff_rate: 1, retry_max_attempts: 2, retry_max_delay_seconds: 1 },
      egress: { allow: ['127.0.0.1/32'] },
    },
    secrets: {
      'local/api-tokens': JSON.stringify({
        tokens: [
          { sha256: sha256Hex(alice), owners: ['alice'] },
          { sha256: sha256Hex(bob), owners: ['bob'] },
        ],
      }),
    },
  });
}, 180_000);

afterAll(async () => {
  await local?.stop();
  await trainer?.stop();
  await receiver?.stop();
  const width = [0, 1, 2].map((i) => Math.max(...table.map((r) => r[i]!.length), 8));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(width[i]!)).join(' | ')} |`;
  console.log(['', line(['area', 'case', 'outcome']), line(width.map((w) => '-'.repeat(w))), ...table.map(line)].join('\n'));
});

const body = (over: Record<string, unknown> = {}, input: Record<string, unknown> = {}) => ({
  input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${receiver.base}/person.zip`, ...input },
  trainer_version: 'faulty',
  model: 'acme/faults',
  ...over,
});
const create = async (fault: Fault, over: Record<string, unknown> = {}) => {
  const res = await local.api('POST', '/v1/trainings', body({ webhook_completed: `${receiver.base}/hook/${fault}`, ...over }, { fault }));
  expect(res.status, JSON.stringify(res.json)).toBe(201);
  return res.json.id as string;
};
const finished = (id: string, timeoutMs = 60_000) =>
  waitFor(`training ${id}`, async () => {
    const t = (await local.api('GET', `/v1/trainings/${id}`)).json;
    return ['succeeded', 'failed', 'canceled'].includes(t.status) ? t : null;
  }, timeoutMs);
const hookOf = (id: string) => waitFor(`webhook of ${id}`, async () => receiver.hooks.find((h) => h.json?.id === id), 30_000);

describe('bad input: a 4xx JSON detail, nothing started', () => {
  const refusals: [string, string, unknown][] = [
    ['webhook_completed', 'decimal loopback http://2130706434/', 'http://2130706434/'],
    ['webhook_completed', 'octal http://0177.0.0.2/', 'http://0177.0.0.2/'],
    ['webhook_completed', 'hex http://0x7f.0.0.2/', 'http://0x7f.0.0.2/'],
    ['webhook_completed', 'short form http://127.2/', 'http://127.2/'],
    ['webhook_completed', 'IPv4-mapped http://[::ffff:127.0.0.2]/', 'http://[::ffff:127.0.0.2]/'],
    ['webhook_completed', 'IPv6 loopback http://[::1]/', 'http://[::1]/'],
    ['webhook_completed', 'metadata http://169.254.169.254/', 'http://169.254.169.254/latest/meta-data/'],
    ['webhook_completed', 'ECS metadata http://169.254.170.2/', 'http://169.254.170.2/v2/credentials'],
    ['webhook_completed', 'IPv6 metadata http://[fd00:ec2::254]/', 'http://[fd00:ec2::254]/'],
    ['webhook_completed', 'CGNAT http://100.64.0.1/', 'http://100.64.0.1/'],
    ['webhook_completed', 'multicast http://224.0.0.1/', 'http://224.0.0.1/'],
    ['webhook_completed', 'unspecified http://0.0.0.0/', 'http://0.0.0.0/'],
    ['webhook_completed', 'private http://10.1.2.3/', 'http://10.1.2.3/'],
    ['webhook_completed', 'IPv6 unspecified http://[::]/', 'http://[::]/'],
    ['webhook_completed', 'broadcast http://255.255.255.255/', 'http://255.255.255.255/'],
    ['webhook_completed', 'non-http file:///etc/passwd', 'file:///etc/passwd'],
    ['input.instance_data', 'private http://192.168.1.10/x.zip', 'http://192.168.1.10/x.zip'],
    ['input.instance_data', 'link-local http://[fe80::1]/x.zip', 'http://[fe80::1]/x.zip'],
  ];
  it.each(refusals)('%s: %s', async (field, name, url) => {
    const before = (await local.api('GET', '/v1/trainings')).json.results.length;
    const req = field === 'webhook_completed' ? body({ webhook_completed: url }) : body({}, { instance_data: url });
    const res = await local.api('POST', '/v1/trainings', req);
    expect(res.status).toBe(400);
    expect(res.json.detail).toMatch(new RegExp(`^${field.replace('.', '\\.')}: `));
    expect((await local.api('GET', '/v1/trainings')).json.results.length).toBe(before);
    row('egress (submit)', `${field} ${name}`, `400: ${res.json.detail.slice(0, 70)}`);
  });

  it('unknown template, unknown trainer, wrong types, oversized body', async () => {
    const cases: [string, unknown, number][] = [
      ['unknown template', body({ template_version: 'no-such-template' }), 400],
      ['unknown trainer', body({ trainer_version: 'nope' }), 400],
      ['input not an object', body({ input: [1, 2] }), 400],
      ['notes not a string', body({ notes: 42 }), 400],
      ['body over 1 MiB', body({}, { pad: 'x'.repeat(1_100_000) }), 413],
      // Checked at submit against the demo trainer's own input schema.
      ['demo input without class_prompt', body({ trainer_version: 'demo' }, { class_prompt: undefined }), 422],
      ['demo input max_train_steps "ten"', body({ trainer_version: 'demo' }, { max_train_steps: 'ten' }), 422],
    ];
    for (const [name, b, status] of cases) {
      const res = await local.api('POST', '/v1/trainings', b);
      expect(res.status, name).toBe(status);
      expect(res.json.detail).toBeTruthy();
      row('bad input', name, `${status}: ${res.json.detail.slice(0, 70)}`);
    }
  });
});

describe('trainer faults', () => {
  it('trainer fails → its error in ours, failed webhook', async () => {
    const id = await create('fail');
    const t = await finished(id);
    expect(t.status).toBe('failed');
    expect(t.error).toContain('CUDA out of memory');
    expect((await hookOf(id)).json.status).toBe('failed');
    row('trainer', 'trainer reports failed', `failed: "${t.error}"; webhook sent`);
  });

  it('trainer never calls back → heartbeat timeout → status check → deadline → failed', async () => {
    const id = await create('silent');
    const t = await finished(id, 90_000);
    expect(t.status).toBe('failed');
    expect(t.error).toMatch(/did not finish within 8 s/);
    expect(trainer.canceled).toContain(`db-${id}`);
    expect((await hookOf(id)).json.status).toBe('failed');
    row('trainer', 'never calls back', `failed after the wait loop: "${t.error}"; trainer run canceled`);
  });

  it.each([
    ['output-404', /answered HTTP 404/, 'output URL answers 404'],
    ['truncated', /cut short|aborted|closed|socket|premature/i, 'output cut short mid-download'],
    ['zip:slip', /\.\./, 'zip slip entry ../out2/x'],
    ['zip:bomb', /expands \d+-fold/, 'zip bomb (20 MiB of zeros)'],
    ['zip:no-index', /model_index\.json/, 'archive without model_index.json'],
    ['zip:no-vae', /names vae but the archive has no vae\/ folder/, 'model_index.json names a component the archive lacks'],
    ['zip:symlink', /symlink|special/i, 'symlink entry'],
    ['zip:many', /entries/, '100 000 entries'],
    ['zip:dot-segment', /"unet\/\.\/weights\.bin" is not a normalised path/, 'non-normalised entry unet/./weights.bin'],
    ['file:symlink.tar', /"unet\/link" is a symlink/, 'tar with a symlink entry'],
    ['file:slip.tar', /"\.\.\/out2\/x" has a "\.\." segment/, 'tar slip entry ../out2/x'],
    ['file:bomb.tar.gz', /expands \d+-fold/, 'gzip tar bomb (20 MiB of zeros)'],
    ['file:fake.tar', /named fake\.tar but is not a readable archive/, 'a .tar that is no tar'],
    ['file:lora.safetensors', /single file \(lora\.safetensors\), but template demo-template loads a diffusers pipeline/, 'single file for a diffusers template'],
  ] as [Fault, RegExp, string][])('%s', async (fault, error, name) => {
    const id = await create(fault);
    const t = await finished(id);
    expect(t.status).toBe('failed');
    expect(t.error).toMatch(error);
    expect((await hookOf(id)).json.status).toBe('failed');
    row('output archive', name, `failed: "${t.error.slice(0, 90)}"`);
  });
});

describe('webhook receiver faults', () => {
  const deliver = async (path: string) => {
    const url = `${receiver.base}${path}`;
    const res = await local.api('POST', '/v1/trainings', { ...body({ webhook_completed: url }, { fault: 'fail' }) });
    return res.json.id as string;
  };
  it.each([
    [500, 'gave up'],
    [302, 'gave up'],
    [410, 'stopped'],
  ])('receiver answers %s', async (status, word) => {
    const path = `/status/${status}`;
    receiver.respondFor(path, status);
    const id = await deliver(path);
    const t = await finished(id);
    const outcome = await waitFor('recorded outcome', async () => {
      const r = (await local.api('GET', `/v1/trainings/${id}`)).json;
      return r.status === 'failed' ? r : null;
    });
    expect(outcome.status).toBe('failed');
    const attempts = await waitFor('attempts', async () => {
      const n = receiver.attemptsFor(path);
      return status === 410 ? (n >= 1 ? n : null) : n >= 2 ? n : null;
    });
    if (status === 410) expect(attempts).toBe(1);
    row('webhook', `receiver answers ${status}`, `${attempts} attempt(s), ${word}; training stays ${t.status}`);
  });

  it('receiver times out', async () => {
    const path = '/slow';
    receiver.delayFor(path, 4000);
    const id = await deliver(path);
    const t = await finished(id);
    const outcome = await waitFor('given up', async () => {
      const r = (await local.api('GET', `/v1/trainings/${id}`)).json;
      return r.status === 'failed' && receiver.attemptsFor(path) >= 2 ? r : null;
    }, 30_000);
    expect(outcome.status).toBe(t.status);
    row('webhook', 'receiver slower than webhooks.timeout_seconds', `${receiver.attemptsFor(path)} attempt(s), gave up; training stays failed`);
  });
});

describe('auth and tenants', () => {
  it('another owner gets 404, never 403', async () => {
    const as = (token: string) => ({ authorization: `Bearer ${token}` });
    const mine = await local.api('POST', '/v1/trainings', { ...body({ model: 'alice/m', trainer_version: 'faulty' }, { fault: 'fail' }) }, as(alice));
    expect(mine.status).toBe(201);
    const id = mine.json.id;
    expect((await local.api('GET', `/v1/trainings/${id}`, undefined, as(bob))).status).toBe(404);
    expect((await local.api('POST', `/v1/trainings/${id}/cancel`, undefined, as(bob))).status).toBe(404);
    expect((await local.api('GET', '/v1/trainings', undefined, as(bob))).json.results.map((t: { id: string }) => t.id)).not.toContain(id);
    expect((await local.api('POST', '/v1/trainings', body({ model: 'alice/m2' }), as(bob))).status).toBe(404);
    expect((await local.api('GET', `/v1/trainings/${id}`, undefined, as(alice))).status).toBe(200);
    row('tenants', "bob reads, lists, cancels, creates under alice's owner", '404 each; alice still reads hers');
  });

  it('the callback route takes only the per-training secret; replays change nothing', async () => {
    const id = await create('fail');
    const t = await finished(id);
    const forged = await fetch(`${local.url}/v1/callbacks/${id}?secret=wrong`, { method: 'POST', body: JSON.stringify({ id: `db-${id}`, status: 'succeeded', output: 'http://127.0.0.1/x.zip' }) });
    expect(forged.status).toBe(401);
    const key = JSON.parse(readFileSync(join(local.dataDir, 'secrets.json'), 'utf8')).callback_key as string;
    const replay = await fetch(`${local.url}/v1/callbacks/${id}?secret=${callbackSecret(key, id)}`, {
      method: 'POST',
      body: JSON.stringify({ id: `db-${id}`, status: 'succeeded', output: 'http://127.0.0.1/x.zip' }),
    });
    expect(replay.status).toBe(200);
    expect((await local.api('GET', `/v1/trainings/${id}`)).json).toMatchObject({ status: t.status, error: t.error });
    row('callback', 'forged secret', '401, nothing changes');
    row('callback', 'late replay after the end', '200 no-op, training unchanged');
  });

  it('Idempotency-Key: same body → same training, other body → 409', async () => {
    const key = { 'idempotency-key': `k-${randomBytes(6).toString('hex')}` };
    const b = body({}, { fault: 'fail' });
    const first = await local.api('POST', '/v1/trainings', b, key);
    const again = await local.api('POST', '/v1/trainings', b, key);
    const other = await local.api('POST', '/v1/trainings', { ...b, notes: 'different' }, key);
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.json.id).toBe(first.json.id);
    expect(other.status).toBe(409);
    row('idempotency', 'same Idempotency-Key twice / with another body', 'same training / 409');
  });
});

describe('trainer queue faults', () => {
  const createSlow = async (steps: number) => {
    const res = await local.api('POST', '/v1/trainings', body({ trainer_version: 'slow', webhook_completed: `${receiver.base}/hook/queue` }, { max_train_steps: steps }));
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    return res.json.id as string;
  };
  const slow = async () => (await local.api('GET', '/v1/trainers')).json.results.find((t: { name: string }) => t.name === 'slow');
  const get = async (id: string) => (await local.api('GET', `/v1/trainings/${id}`)).json;
  const queuedBehind = async () => {
    const holder = await createSlow(300);
    await waitFor('the holder to run', async () => (await get(holder)).status === 'processing', 30_000);
    const waiter = await createSlow(10);
    const t = await waitFor('the waiter to queue', async () => ((await get(waiter)).logs?.includes('waiting for trainer slow: 0 ahead') ? get(waiter) : null), 30_000);
    expect(t.status).toBe('starting');
    expect(await slow()).toMatchObject({ capacity: 1, busy: 1, queue_length: 1 });
    return { holder, waiter };
  };
  /** StopExecution from outside (the AWS CLI or console would do the same): no handler of ours runs. */
  const killExecution = async (id: string) => {
    const env = JSON.parse(readFileSync(join(local.dataDir, 'aws-endpoints.json'), 'utf8'));
    const sfn = new SFNClient({ endpoint: env.AWS_ENDPOINT_URL_SFN, region: env.AWS_REGION, credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY } });
    await sfn.send(new StopExecutionCommand({ executionArn: `${env.STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${id}` }));
    sfn.destroy();
  };

  it('cancel while queued → out of the queue at once, canceled webhook', async () => {
    const { holder, waiter } = await queuedBehind();
    const res = await local.api('POST', `/v1/trainings/${waiter}/cancel`);
    expect(res.json.status).toBe('canceled');
    expect(await slow()).toMatchObject({ busy: 1, queue_length: 0 });
    expect((await hookOf(waiter)).json.status).toBe('canceled');
    await local.api('POST', `/v1/trainings/${holder}/cancel`);
    await waitFor('the slot to free', async () => (await slow()).busy === 0, 10_000);
    row('queue', 'cancel while queued', 'canceled; left the queue at once (queue_length 1 → 0); webhook sent');
  });

  it('an execution killed outside our handlers → its slot is reclaimed, the next training runs', async () => {
    const { holder, waiter } = await queuedBehind();
    await killExecution(holder);
    const t = await finished(waiter, 60_000);
    expect(t.status).toBe('succeeded');
    expect(await slow()).toMatchObject({ busy: 0, queue_length: 0 });
    // The stopped one does not stay `processing`: it failed, says why, and its webhook went out.
    const killed = await get(holder);
    expect(killed.status).toBe('failed');
    expect(killed.error).toMatch(/workflow execution was stopped outside its steps/);
    const hook = await waitFor('its failed webhook', async () => receiver.hooks.find((h) => h.json?.id === holder && h.json.status === 'failed'), 30_000);
    expect(hook.json.error).toBe(killed.error);
    row('queue', "slot holder's execution stopped from outside", 'failed ("…execution was stopped outside its steps"), webhook sent; slot freed by the execution-status rule; the next training succeeded');
  });

  it('no slot within timeouts.queue_seconds → failed, failed webhook', async () => {
    const holder = await createSlow(1000);
    await waitFor('the holder to run', async () => (await get(holder)).status === 'processing', 30_000);
    const waiter = await createSlow(10);
    const t = await finished(waiter, 30_000);
    expect(t.status).toBe('failed');
    expect(t.error).toMatch(/no slot on trainer slow came free within 5 s \(timeouts\.queue_seconds\)/);
    expect((await hookOf(waiter)).json.status).toBe('failed');
    await local.api('POST', `/v1/trainings/${holder}/cancel`);
    expect((await slow()).queue_length).toBe(0);
    row('queue', 'no free slot within timeouts.queue_seconds', `failed: "${t.error.slice(0, 80)}"; webhook sent`);
  });
});

describe('cancel and secrets', () => {
  it('cancel while the weights stage → canceled, webhook sent', async () => {
    const id = await create('slow-output');
    await waitFor('pushing', async () => (await local.api('GET', `/v1/trainings/${id}`)).json.status === 'pushing', 30_000);
    const res = await local.api('POST', `/v1/trainings/${id}/cancel`);
    expect(res.json.status).toBe('canceled');
    const t = await finished(id);
    expect(t.status).toBe('canceled');
    expect((await hookOf(id)).json.status).toBe('canceled');
    row('cancel', 'during staging (pushing)', 'canceled; execution stopped; webhook sent');
  });

  it('cancel right after create → canceled, trainer never left running', async () => {
    const id = await create('silent');
    const res = await local.api('POST', `/v1/trainings/${id}/cancel`);
    expect(res.json.status).toBe('canceled');
    expect((await hookOf(id)).json.status).toBe('canceled');
    row('cancel', 'right after create (starting)', 'canceled; webhook sent');
  });

  it('no token, callback secret, task token or presigned URL reaches any log', async () => {
    const id = await create('ok');
    await finished(id);
    const logs = readFileSync(join(local.dataDir, 'service.log'), 'utf8') + local.output();
    const key = JSON.parse(readFileSync(join(local.dataDir, 'secrets.json'), 'utf8')).callback_key as string;
    for (const secret of [local.token, alice, bob, callbackSecret(key, id), key]) expect(logs).not.toContain(secret);
    expect(logs).not.toMatch(/X-Amz-Signature|X-Amz-Credential|secret=[A-Za-z0-9_-]{8}/);
    // Task tokens are 32 random bytes in base64url (43 characters).
    expect(logs).not.toMatch(/[A-Za-z0-9_-]{43}/);
    row('secrets', 'all logs of full runs searched', 'no API token, callback secret, task token or presigned URL');
  });
});
