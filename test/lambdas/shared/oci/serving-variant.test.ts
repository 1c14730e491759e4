/**
 * A version's SageMaker variant, made on an image layout as local mode's bare path makes it: the
 * version's layers shared, one layer with the adapter, SageMaker's entrypoint, the labels kept
 * and the weights layer's digest added.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendLayer, readImageConfig } from '#shared/oci/append';
import { OciLayout } from '#shared/oci/layout';
import { pushServingVariant, servingTag, WEIGHTS_DIGEST_LABEL } from '#shared/oci/serving-variant';
import { tarDirectory } from '#shared/oci/tar';
import { createDemoTemplate } from '#shared/oci/template';
import { listTar } from '#test-helpers/registry';
import { repoFile } from '#test-helpers/paths';

describe('the SageMaker variant of a version', () => {
  let root: string;
  let models: OciLayout;
  let version: { manifestDigest: string; digest: string };
  const adapter = () => readFile(repoFile('serving/sagemaker_adapter.py'));

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'serving-variant-'));
    const weights = join(root, 'weights');
    await mkdir(weights);
    await writeFile(join(weights, 'model_index.json'), '{"trained": true}');
    const templates = new OciLayout(join(root, 'templates'));
    await createDemoTemplate(templates, '', 'latest');
    models = new OciLayout(join(root, 'model'));
    version = await appendLayer({
      source: templates,
      sourceRepo: '',
      sourceRef: 'latest',
      target: models,
      targetRepo: '',
      tag: 'v1',
      layer: () => tarDirectory(weights),
      labels: { 'ai.dreambooth.training-id': 't1' },
    });
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('shares every layer of the version and adds one with the adapter, under <digest>-sagemaker', async () => {
    // Act
    const out = await pushServingVariant(models, '', version.manifestDigest, await adapter());

    // Assess
    expect(out.image).toBe(`oci:${join(root, 'model')}:${version.digest}-sagemaker`);
    const base = await readImageConfig(models, '', version.manifestDigest);
    const variant = await readImageConfig(models, '', servingTag(version.digest));
    expect(variant.manifest.layers.slice(0, -1)).toEqual(base.manifest.layers);
    expect(variant.manifest.layers).toHaveLength(base.manifest.layers.length + 1);
    const extra = variant.manifest.layers.at(-1)!;
    // Kilobytes: the adapter and its folders, never the weights again.
    expect(extra.size).toBeLessThan(64 * 1024);
    const files = (await listTar(await models.getBlob('', extra.digest))).filter((e) => e.type === 'file');
    expect(files.map((f) => f.name)).toEqual(['opt/dreambooth/sagemaker_adapter.py']);
    expect(files[0]!.body.equals(await adapter())).toBe(true);
  });

  it("runs the adapter as SageMaker starts it, keeps the version's labels and names its weights layer", async () => {
    const out = await pushServingVariant(models, '', version.manifestDigest, await adapter());
    const base = await readImageConfig(models, '', version.manifestDigest);
    const { config } = await readImageConfig(models, '', servingTag(version.digest));

    expect(config.config?.Entrypoint).toEqual(['python3', '/opt/dreambooth/sagemaker_adapter.py']);
    expect(config.config?.Cmd).toEqual(['serve']);
    expect(config.config?.WorkingDir).toBe(base.config.config?.WorkingDir);
    expect(config.config?.Env).toEqual(base.config.config?.Env);
    expect(config.config?.Labels).toEqual({ ...base.config.config?.Labels, [WEIGHTS_DIGEST_LABEL]: base.config.rootfs.diff_ids.at(-1) });
    expect(out.weightsDigest).toBe(base.manifest.layers.at(-1)!.digest);
  });

  it('is the same image when pushed again (a retried build)', async () => {
    const first = await pushServingVariant(models, '', version.manifestDigest, await adapter());
    const again = await pushServingVariant(models, '', version.digest, await adapter());
    expect((await models.getManifest('', servingTag(version.digest))).digest).toBe((await models.getManifest('', servingTag(version.manifestDigest))).digest);
    expect(again).toEqual(first);
  });

  it('refuses a version that is not there', async () => {
    await expect(pushServingVariant(models, '', `sha256:${'0'.repeat(64)}`, await adapter())).rejects.toThrow();
  });
});
