/**
 * The catalog's demo-template image: Cog's labels with the demo template's own schema, the label
 * by which local mode serves it in-process, and both kept on a version's SageMaker variant with
 * the weights digest it renders from.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendLayer, readImageConfig } from '#shared/oci/append';
import { OciLayout } from '#shared/oci/layout';
import { pushServingVariant, servingTag, WEIGHTS_DIGEST_LABEL } from '#shared/oci/serving-variant';
import { tarDirectory } from '#shared/oci/tar';
import { createDemoTemplate, createServedDemoTemplate, DEMO_TEMPLATE_LABEL } from '#shared/oci/template';
import { DEMO_TEMPLATE_OPENAPI, demoTemplateOpenApi, WEIGHTS_INPUT } from '#shared/serving/demo-template-schema';
import { startDemoTemplateServer } from '#serving/demo-template/server';
import { repoFile } from '#test-helpers/paths';

describe('the demo-template image', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'demo-template-image-'));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it("carries the served demo template's schema and the in-process label; the vanilla stand-in neither", async () => {
    const demo = new OciLayout(join(root, 'demo'));
    const vanilla = new OciLayout(join(root, 'vanilla'));
    const digest = await createServedDemoTemplate(demo, '', 'latest');
    await createDemoTemplate(vanilla, '', 'latest');

    const { config } = await readImageConfig(demo, '', digest);
    expect(config.config?.Labels?.[DEMO_TEMPLATE_LABEL]).toBe('1');
    const schema = JSON.parse(config.config!.Labels!['run.cog.openapi_schema']!);
    // With the input through which demo-lora's versions get their weights.
    expect(schema).toEqual(demoTemplateOpenApi(true));
    expect(schema.components.schemas.Input.properties).toHaveProperty(WEIGHTS_INPUT);
    // The document the image declares is the one the in-process template answers with, when it
    // can fetch per-request weights (as local mode serves it).
    const server = await startDemoTemplateServer({ weights: { digest: 'sha256:x' }, weightsFor: async () => 'sha256:y' });
    try {
      expect(await (await fetch(`${server.url}/openapi.json`)).json()).toEqual(schema);
    } finally {
      await server.stop();
    }
    const plain = (await readImageConfig(vanilla, '', 'latest')).config.config?.Labels;
    expect(plain?.[DEMO_TEMPLATE_LABEL]).toBeUndefined();
    expect(JSON.parse(plain!['run.cog.openapi_schema']!)).not.toEqual(DEMO_TEMPLATE_OPENAPI);
  });

  it('is the same image at every start', async () => {
    const a = await createServedDemoTemplate(new OciLayout(join(root, 'a')), '', 'latest');
    const b = await createServedDemoTemplate(new OciLayout(join(root, 'b')), '', 'latest');
    expect(a).toBe(b);
  });

  it("keeps the label on a version's SageMaker variant, beside the weights digest", async () => {
    const weights = join(root, 'weights');
    await mkdir(weights, { recursive: true });
    await writeFile(join(weights, 'model_index.json'), '{}');
    const templates = new OciLayout(join(root, 'templates'));
    await createServedDemoTemplate(templates, '', 'latest');
    const models = new OciLayout(join(root, 'models'));
    const version = await appendLayer({ source: templates, sourceRepo: '', sourceRef: 'latest', target: models, targetRepo: '', tag: 'v1', layer: () => tarDirectory(weights), labels: {} });

    await pushServingVariant(models, '', version.manifestDigest, await readFile(repoFile('serving/sagemaker_adapter.py')));

    const labels = (await readImageConfig(models, '', servingTag(version.digest))).config.config?.Labels;
    expect(labels?.[DEMO_TEMPLATE_LABEL]).toBe('1');
    expect(labels?.[WEIGHTS_DIGEST_LABEL]).toBe(version.layerDigest);
  });
});
