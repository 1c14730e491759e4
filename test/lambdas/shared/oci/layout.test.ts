import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendLayer, readImageConfig } from '#shared/oci/append';
import { OciLayout, REF_NAME } from '#shared/oci/layout';
import { RegistryClient } from '#shared/oci/registry';
import { tarDirectory } from '#shared/oci/tar';
import { createDemoTemplate } from '#shared/oci/template';
import { requireRegistry } from '#test-helpers/capabilities';
import { listTar, startRegistry, type TestRegistry } from '#test-helpers/registry';

/** What a layout reader checks: the marker file, index.json, and every blob named by its own sha256. */
async function expectValidLayout(dir: string) {
  expect(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
  expect(index.schemaVersion).toBe(2);
  const blobs = await readdir(join(dir, 'blobs', 'sha256'));
  for (const name of blobs) {
    const data = await readFile(join(dir, 'blobs', 'sha256', name));
    expect(createHash('sha256').update(data).digest('hex')).toBe(name);
  }
  for (const m of index.manifests) {
    const manifest = JSON.parse(await readFile(join(dir, 'blobs', 'sha256', m.digest.slice(7)), 'utf8'));
    for (const d of [manifest.config, ...manifest.layers]) expect(blobs).toContain(d.digest.slice(7));
  }
  expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  return index as { manifests: { digest: string; annotations: Record<string, string> }[] };
}

describe('OCI image layout', () => {
  let root: string;
  let weights: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'layouts-'));
    weights = join(root, 'weights');
    await mkdir(weights);
    await writeFile(join(weights, 'model_index.json'), '{}');
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('appends layout to layout, named oci:<dir>:<tag>, and leaves a valid layout', async () => {
    // Prepare
    const templates = new OciLayout(join(root, 'templates'));
    const template = await createDemoTemplate(templates, '', 'latest');
    const models = new OciLayout(join(root, 'model'));

    // Act
    const out = await appendLayer({
      source: templates,
      sourceRepo: '',
      sourceRef: 'latest',
      target: models,
      targetRepo: '',
      tag: 'v1',
      layer: () => tarDirectory(weights),
      labels: { note: 'first' },
    });

    // Assess
    expect(out.image).toBe(`oci:${join(root, 'model')}:v1`);
    const index = await expectValidLayout(join(root, 'model'));
    expect(index.manifests).toEqual([expect.objectContaining({ digest: out.manifestDigest, annotations: { [REF_NAME]: 'v1' } })]);
    const { config, manifest } = await readImageConfig(models, '', 'v1');
    expect(config.config?.Labels?.note).toBe('first');
    expect(manifest.annotations?.['org.opencontainers.image.base.digest']).toBe(template);
    const names = (await listTar(await models.getBlob('', manifest.layers.at(-1)!.digest))).map((e) => e.name);
    expect(names).toContain('src/weights/model_index.json');
    await expectValidLayout(join(root, 'templates'));
  });

  it('moves a tag to the newest image and keeps one index entry per tag', async () => {
    const layout = new OciLayout(join(root, 'retag'));
    const first = await createDemoTemplate(layout, '', 'latest');
    const second = await createDemoTemplate(layout, '', 'latest', 'docker');
    await createDemoTemplate(layout, '', 'other');
    const index = await expectValidLayout(join(root, 'retag'));
    expect(index.manifests.map((m) => m.annotations[REF_NAME])).toEqual(['latest', 'other']);
    expect(first).not.toBe(second);
    expect((await layout.getManifest('', 'latest')).digest).toBe(second);
  });

  it('says which tag is missing', async () => {
    const layout = new OciLayout(join(root, 'templates'));
    await expect(layout.getManifest('', 'nope')).rejects.toThrow(/no image tagged nope/);
  });
});

describe.skipIf(requireRegistry('copying from a registry to a layout').skip)('registry to layout', () => {
  let registry: TestRegistry;
  let dir: string;

  beforeAll(async () => {
    registry = await startRegistry();
    dir = await mkdtemp(join(tmpdir(), 'layout-target-'));
  });
  afterAll(async () => {
    await registry?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('copies the template blobs from the registry into the layout', async () => {
    // Prepare
    const client = new RegistryClient({ baseUrl: registry.url });
    const template = await createDemoTemplate(client, 'templates/vanilla-template', 'latest');
    const weights = join(dir, '..', `${dir.split('/').pop()}-weights`);
    await mkdir(weights, { recursive: true });
    await writeFile(join(weights, 'model_index.json'), '{}');
    const layout = new OciLayout(join(dir, 'model'));

    // Act
    const out = await appendLayer({
      source: client,
      sourceRepo: 'templates/vanilla-template',
      sourceRef: template,
      target: layout,
      targetRepo: '',
      tag: 'v1',
      layer: () => tarDirectory(weights),
      labels: {},
    });
    await rm(weights, { recursive: true, force: true });

    // Assess
    await expectValidLayout(join(dir, 'model'));
    const { manifest } = await layout.getManifest('', 'v1');
    expect(manifest.layers).toHaveLength((await client.getManifest('templates/vanilla-template', template)).manifest.layers.length + 1);
    expect((await layout.getManifest('', out.manifestDigest)).digest).toBe(out.manifestDigest);
  });
});
