/**
 * The whole serving path on a docker engine, through local mode as a user starts it: the demo
 * trainer trains onto a template that is a runnable Cog-like image (made here from the
 * machine's own Python, test/helpers/python-image.ts), the docker build path
 * (buildspecs/build-model.yml) pushes the version and its SageMaker variant, and
 * `POST /v1/predictions` runs on the version's endpoint, whose instance is that variant in a
 * container (`<image> serve`, the adapter in front of the image's Cog server). Needs a docker
 * engine and a registry: skipped with the reason outside CI, a failure in CI.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceDataZip } from '#infra/local/demo';
import { SERVING_ENTRYPOINT } from '#shared/oci/serving-variant';
import { requireDocker, requireRegistry } from '#test-helpers/capabilities';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';
import { buildPythonCogImage } from '#test-helpers/python-image';
import { startRegistry, type TestRegistry } from '#test-helpers/registry';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const skipped = 'predictions served by a container on the docker engine';
const runs = !requireDocker(skipped).skip && !requireRegistry(skipped).skip;
const terminal = (s: string) => ['succeeded', 'failed', 'canceled'].includes(s);

describe.skipIf(!runs)('a version trained in local mode, served from its SageMaker variant in a container', () => {
  let local: Local;
  let own: TestRegistry | undefined;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let version: string;

  beforeAll(async () => {
    const host = process.env.DREAMBOOTH_TEST_REGISTRY ?? (own = await startRegistry()).host;
    const repo = `templates/cog-stand-in-${process.pid}`;
    const template = await buildPythonCogImage(host, repo);
    receiver = await startReceiver();
    receiver.serve('/person.zip', await instanceDataZip(2));
    local = await startLocal({
      build: 'docker',
      registry: host,
      config: {
        trainers: { demo: { backend: 'demo', steps_per_second: 50 } },
        templates: { default: 'cog-stand-in', catalog: { 'cog-stand-in': { repository: `${host}/${repo}`, digests: [template.split('@sha256:')[1]], weights: 'diffusers' } } },
      },
    });
    const created = await local.api('POST', '/v1/trainings', {
      input: { instance_prompt: 'a photo of a cjw person', class_prompt: 'a photo of a person', instance_data: `${receiver.base}/person.zip`, max_train_steps: 10 },
      trainer_version: 'demo',
      model: 'acme/served',
    });
    expect(created.status).toBe(201);
    const done = await waitFor('the training to end', async () => {
      const t = (await local.api('GET', `/v1/trainings/${created.json.id}`)).json;
      return terminal(t.status) ? t : null;
    }, 300_000);
    expect(done, local.output().slice(-3000)).toMatchObject({ status: 'succeeded', error: null });
    version = done.version;
  }, 420_000);

  afterAll(async () => {
    await local?.stop();
    await receiver?.stop();
    await own?.stop();
  });

  const predict = async (input: Record<string, unknown>) => {
    const created = await local.api('POST', '/v1/predictions', { version, input });
    expect(created.status).toBe(201);
    return waitFor(`prediction ${created.json.id} to end`, async () => {
      const p = (await local.api('GET', `/v1/predictions/${created.json.id}`)).json;
      return terminal(p.status) ? p : null;
    }, 240_000);
  };

  it("succeeds with the output of the image's own model, from a container the engine runs", async () => {
    const done = await predict({ prompt: 'a photo of cjw person on the moon' });
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.output).toHaveLength(1);
    const png = Buffer.from(await (await fetch(String(done.output[0]))).arrayBuffer());
    expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE);
    expect(done.metrics.predict_time).toBeGreaterThan(0);
    // The instance is the version's SageMaker variant (not the version itself), as a container.
    const [container] = execFileSync('docker', ['ps', '-q', '--filter', 'name=^sagemaker-'], { encoding: 'utf8' }).trim().split('\n');
    const run = JSON.parse(execFileSync('docker', ['inspect', '--format', '{{json .Config}}', container!], { encoding: 'utf8' }));
    expect(run.Image).toMatch(/^127\.0\.0\.1:\d+\/acme\/served@sha256:[0-9a-f]{64}$/);
    expect(run.Image).not.toContain(version);
    expect(run.Entrypoint).toEqual(SERVING_ENTRYPOINT);
    expect(run.Cmd).toEqual(['serve']);
  }, 300_000);

  it("fails with the model's own error", async () => {
    const done = await predict({ prompt: 'x', fail_with: 'CUDA out of memory' });
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/CUDA out of memory/);
  }, 120_000);
});
