/**
 * Trainer outputs as they come, end to end through local mode on both build paths: a tar of a
 * LoRA (Replicate's `trained_model.tar`), a gzip tar, and a single `.safetensors`, each built
 * into /src/weights of a template that accepts any weights (named by a full reference: no
 * declaration means `any`); the same outputs refused for a diffusers template; entry names
 * that are not normalised refused at staging, before any build.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceDataZip } from '#infra/local/demo';
import { startFaultyTrainer, type Fault } from '../faults/trainer.ts';
import { inspectImage } from '#test-helpers/images';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';
import { registryAvailable } from '#test-helpers/registry';
import { tarball } from '#test-helpers/tars';
import { zip } from '#test-helpers/zips';

function dockerReachable(): boolean {
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

const docker = dockerReachable();
if (process.env.CI && !docker) throw new Error('CI must provide a docker engine (DOCKER_HOST) for the docker build path');
if (!docker) console.warn('trainer outputs e2e: no docker engine reachable here, so only the append build path runs');
const strategies = (docker ? ['append', 'docker'] : ['append']) as ('append' | 'docker')[];

const LORA = randomBytes(40 * 1024);

describe.skipIf(!registryAvailable()).each(strategies)('trainer outputs, %s build', (build) => {
  let local: Local;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let trainer: Awaited<ReturnType<typeof startFaultyTrainer>>;
  /** The local vanilla-template by full reference: outside the catalog, so it accepts any weights. */
  let anyTemplate: string;

  beforeAll(async () => {
    receiver = await startReceiver();
    receiver.serve('/person.zip', await instanceDataZip(1));
    trainer = await startFaultyTrainer({
      'trained_model.tar': await tarball([{ name: 'lora.safetensors', data: LORA }]),
      'trained_model.tar.gz': await tarball([{ name: 'output/', type: 'directory' }, { name: 'output/lora.safetensors', data: LORA }], { gzip: true }),
      'lora.safetensors': LORA,
      'dotslash.tar': await tarball([{ name: './lora.safetensors', data: LORA }]),
      dotsegment: await zip([{ name: 'model_index.json', data: '{}' }, { name: 'unet/./config.json', data: '{}' }]),
    });
    local = await startLocal({
      build,
      registry: process.env.DREAMBOOTH_TEST_REGISTRY,
      config: { trainers: { faulty: { backend: 'cog', url: trainer.url } }, egress: { allow: ['127.0.0.1/32'] } },
    });
    const { json } = await local.api('GET', '/v1/templates');
    const vanilla = json.results.find((t: { name: string }) => t.name === 'vanilla-template');
    anyTemplate = `${vanilla.repository}@sha256:${vanilla.digests[0]}`;
  }, 180_000);
  afterAll(async () => {
    await local?.stop();
    await trainer?.stop();
    await receiver?.stop();
  });

  const train = async (fault: Fault, model: string, template?: string) => {
    const res = await local.api('POST', '/v1/trainings', {
      input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${receiver.base}/person.zip`, fault },
      trainer_version: 'faulty',
      model,
      ...(template ? { template_version: template } : {}),
    });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    return waitFor(
      `training ${res.json.id}`,
      async () => {
        const r = await local.api('GET', `/v1/trainings/${res.json.id}`);
        return ['succeeded', 'failed', 'canceled'].includes(r.json.status) ? r.json : null;
      },
      150_000,
    );
  };

  it.each([
    ['a tar holding lora.safetensors', 'file:trained_model.tar', ['src/weights/lora.safetensors']],
    ['a gzip tar with a folder', 'file:trained_model.tar.gz', ['src/weights/output/', 'src/weights/output/lora.safetensors']],
    ['a single .safetensors file', 'file:lora.safetensors', ['src/weights/lora.safetensors']],
  ] as const)('%s is built into /src/weights of a template that accepts any weights', async (_what, fault, files) => {
    const done = await train(fault, `acme/out-${fault.replace(/\W+/g, '-')}`, anyTemplate);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    const version = await local.api('GET', `/v1/models/${done.model}/versions/${done.version}`);
    const image = await inspectImage(version.json.image);
    expect(image.lastLayerFiles).toEqual(expect.arrayContaining(files.map(String)));
    expect(image.lastLayerFiles.filter((f) => !f.endsWith('/')).sort()).toEqual(files.filter((f) => !f.endsWith('/')).sort());
  }, 180_000);

  it('a single file for a diffusers template (the default) fails at staging, saying why', async () => {
    const done = await train('file:lora.safetensors', 'acme/out-refused');
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/single file \(lora\.safetensors\), but template demo-template loads a diffusers pipeline/);
    expect(done.version).toBeNull();
  }, 180_000);

  it.each([
    ['a tar entry "./lora.safetensors"', 'file:dotslash.tar' as Fault, /"\.\/lora\.safetensors" is not a normalised path/],
    ['a zip entry "unet/./config.json"', 'zip:dotsegment' as Fault, /"unet\/\.\/config\.json" is not a normalised path/],
  ])('%s is refused at staging, before any build', async (_what, fault, message) => {
    const done = await train(fault, 'acme/out-names', anyTemplate);
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/^the trainer's output archive is not usable: /);
    expect(done.error).toMatch(message);
    // Only stage-weights words its refusals so: the build never ran.
    expect(done.version).toBeNull();
  }, 180_000);

  it("a Trainings-API training's output.weights downloads the staged archive through the API, by a short-lived redirect", async () => {
    const { json: trainers } = await local.api('GET', '/v1/trainers');
    const faulty = trainers.results.find((t: { key: string }) => t.key === 'faulty');
    const created = await local.api('POST', `/v1/models/${faulty.owner}/${faulty.name}/versions/${faulty.version}/trainings`, {
      destination: 'acme/out-weights',
      input: { instance_prompt: 'p', class_prompt: 'c', instance_data: `${receiver.base}/person.zip`, fault: 'file:trained_model.tar' },
      template_version: anyTemplate,
    });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    expect(created.json.output).toBeNull();
    const done = await waitFor('succeeded', async () => {
      const r = await local.api('GET', `/v1/trainings/${created.json.id}`);
      return ['succeeded', 'failed'].includes(r.json.status) ? r.json : null;
    }, 150_000);
    expect(done.status, done.error).toBe('succeeded');
    expect(done.output).toEqual({ version: expect.stringMatching(/^acme\/out-weights:[0-9a-f]{64}$/), weights: `${local.url}/v1/trainings/${done.id}/weights` });

    // With the token: a redirect to a presigned GET that expires in minutes, not a public URL.
    const redirect = await fetch(done.output.weights, { headers: { authorization: `Bearer ${local.token}` }, redirect: 'manual' });
    expect(redirect.status).toBe(302);
    const location = new URL(redirect.headers.get('location')!);
    expect(location.searchParams.get('X-Amz-Expires')).toBe('300');
    expect(location.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    const file = await fetch(location);
    expect(file.status).toBe(200);
    expect(Buffer.from(await file.arrayBuffer()).equals(trainer.files['trained_model.tar']!)).toBe(true);
    // Followed as clients follow it (the token is not sent on to the other origin).
    const followed = await fetch(done.output.weights, { headers: { authorization: `Bearer ${local.token}` } });
    expect(Buffer.from(await followed.arrayBuffer()).equals(trainer.files['trained_model.tar']!)).toBe(true);

    expect((await fetch(done.output.weights)).status).toBe(401);
    expect((await local.api('GET', '/v1/trainings/aaaaaaaaaaaaaaaaaaaaaaaaaa/weights')).status).toBe(404);
    // The presigned URL is never logged.
    expect(local.output()).not.toContain(location.searchParams.get('X-Amz-Signature')!);
  }, 180_000);

  it('a training that has not succeeded has no weights to download; the seed flavour keeps its exact fields', async () => {
    const failed = await train('file:lora.safetensors', 'acme/out-noweights');
    expect(failed.status).toBe('failed');
    expect(Object.keys(failed).sort()).toEqual(['created_at', 'error', 'id', 'input', 'logs', 'metrics', 'model', 'notes', 'status', 'version', 'webhook_completed'].sort());
    const res = await local.api('GET', `/v1/trainings/${failed.id}/weights`);
    expect(res.status).toBe(409);
    expect(res.json.detail).toMatch(/is failed; its weights can be downloaded once it has succeeded/);
  }, 180_000);
});
