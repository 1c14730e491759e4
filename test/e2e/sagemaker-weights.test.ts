/**
 * A SageMaker-trained training after its job, end to end through local mode with no docker
 * engine: a `docker` on the PATH stands in for the container only (it writes the runner's
 * model/output.zip into the job's /opt/ml, as a finished run leaves it), everything else is
 * local mode's own — the SageMaker stand-in (which answers S3ModelArtifacts without a trailing
 * slash), stage-weights, the append build into an OCI layout, each function under its own
 * policy. The real container runs in test/e2e/sagemaker.test.ts, where an engine is.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceDataZip } from '#infra/local/demo';
import { startLocal, startReceiver, waitFor, type Local } from '#test-helpers/local-mode';
import { zip } from '#test-helpers/zips';

/** `docker version` answers; `docker run` puts the archive in the job's model folder and counts the run. */
function containerStandIn(archive: Buffer): { bin: string; runs: () => number } {
  const bin = mkdtempSync(join(tmpdir(), 'container-stand-in-'));
  writeFileSync(join(bin, 'output.zip'), archive);
  const script = `#!/bin/sh
case "$1" in
  version) echo stand-in; exit 0 ;;
  run)
    prev=""
    for a in "$@"; do
      if [ "$prev" = "-v" ]; then case "$a" in *:/opt/ml) ml="\${a%:/opt/ml}" ;; esac; fi
      prev="$a"
    done
    mkdir -p "$ml/model" && cp "${bin}/output.zip" "$ml/model/output.zip" && echo run >> "${bin}/runs" ;;
esac
exit 0
`;
  writeFileSync(join(bin, 'docker'), script, { mode: 0o755 });
  return { bin, runs: () => (existsSync(join(bin, 'runs')) ? readFileSync(join(bin, 'runs'), 'utf8').split('\n').filter(Boolean).length : 0) };
}

describe("a SageMaker-trained training's weights", { timeout: 240_000 }, () => {
  let local: Local;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let container: ReturnType<typeof containerStandIn>;
  let archive: Buffer;

  beforeAll(async () => {
    archive = await zip([
      { name: 'model_index.json', data: JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'] }) },
      { name: 'unet/diffusion_pytorch_model.bin', data: randomBytes(20_000) },
    ]);
    container = containerStandIn(archive);
    receiver = await startReceiver();
    receiver.serve('/person.zip', await instanceDataZip(1));
    local = await startLocal({
      build: 'append',
      registry: 'none',
      config: { trainers: { gpu: { backend: 'sagemaker', image: `127.0.0.1:1/trainer@sha256:${'a'.repeat(64)}`, max_runtime_seconds: 600 } } },
      env: { PATH: `${container.bin}:${process.env.PATH}`, DOCKER_HOST: 'unix:///nonexistent/stand-in.sock' },
    });
  }, 120_000);
  afterAll(async () => {
    await local?.stop();
    await receiver?.stop();
  });

  const finished = (id: string) =>
    waitFor(`training ${id} to end`, async () => {
      const t = (await local.api('GET', `/v1/trainings/${id}`)).json;
      return ['succeeded', 'failed', 'canceled'].includes(t.status) ? t : null;
    }, 180_000);

  it('are staged from the job output, downloaded through the API, and re-templated without a second job', async () => {
    const created = await local.api('POST', '/v1/trainings', {
      input: { instance_prompt: 'a photo of a cjw person', instance_data: `${receiver.base}/person.zip` },
      trainer_version: 'gpu',
      model: 'acme/gpu',
    });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    const first = await finished(created.json.id);
    expect(first.error).toBeNull();
    expect(first.status).toBe('succeeded');
    expect(container.runs()).toBe(1);

    // The archive where the job left it, through a presigned redirect the upload function signs.
    const url = `${local.url}/v1/trainings/${first.id}/weights`;
    const redirect = await fetch(url, { headers: { authorization: `Bearer ${local.token}` }, redirect: 'manual' });
    expect(redirect.status).toBe(302);
    const file = await fetch(redirect.headers.get('location')!);
    expect(file.status).toBe(200);
    expect(Buffer.from(await file.arrayBuffer()).equals(archive)).toBe(true);

    const res = await local.api('POST', '/v1/models/acme/gpu/versions', { training_id: first.id, template_version: 'vanilla-template', notes: 'the same weights again' });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    const second = await finished(res.json.id);
    expect(second.error).toBeNull();
    expect(second.status).toBe('succeeded');
    expect(second.version).not.toBe(first.version);
    expect(container.runs()).toBe(1);
    const versions = (await local.api('GET', '/v1/models/acme/gpu/versions')).json.results.map((v: { id: string }) => v.id);
    expect(versions).toEqual([second.version, first.version]);
  });
});
