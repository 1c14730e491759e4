import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { appendLayer, readImageConfig } from '#shared/oci/append';
import { RegistryClient } from '#shared/oci/registry';
import { tarDirectory } from '#shared/oci/tar';
import { createDemoTemplate } from '#shared/oci/template';
import { MediaTypes } from '#shared/oci/types';
import { requireRegistry } from '#test-helpers/capabilities';
import { listTar, startRegistry, type TestRegistry } from '#test-helpers/registry';

const TEMPLATE = 'templates/vanilla-template';

async function weightsDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weights-'));
  await mkdir(join(dir, 'unet'));
  await writeFile(join(dir, 'model_index.json'), '{"_class_name": "StableDiffusionPipeline"}');
  await writeFile(join(dir, 'unet', 'x.bin'), Buffer.alloc(3000, 7));
  return dir;
}

describe.skipIf(requireRegistry('appendLayer on a real registry (blob mounts, pushes)').skip)('appendLayer on a real registry', () => {
  let registry: TestRegistry;
  let client: RegistryClient;
  let weights: string;
  let template: string;

  beforeAll(async () => {
    registry = await startRegistry();
    client = new RegistryClient({ baseUrl: registry.url });
    weights = await weightsDir();
    template = await createDemoTemplate(client, TEMPLATE, 'latest');
  });
  afterAll(async () => {
    await registry?.stop();
    if (weights) await rm(weights, { recursive: true, force: true });
  });

  it('bakes the weights into a new image that keeps the template settings', async () => {
    // Act
    const out = await appendLayer({
      source: client,
      sourceRepo: TEMPLATE,
      sourceRef: template,
      target: client,
      targetRepo: 'acme/dog',
      tag: 'v1',
      layer: () => tarDirectory(weights),
      labels: { 'org.opencontainers.image.description': 'my notes' },
    });

    // Assess
    expect(out.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(out.image).toBe(`${registry.host}/acme/dog@sha256:${out.digest}`);
    const head = await client.headManifest('acme/dog', 'v1');
    expect(head?.digest).toBe(out.manifestDigest);
    const { manifest: raw } = await client.getManifest('acme/dog', out.manifestDigest);
    const templateImage = await readImageConfig(client, TEMPLATE, template);
    const { config, manifest } = await readImageConfig(client, 'acme/dog', 'v1');
    expect(manifest).toEqual(raw);
    expect(config.config?.WorkingDir).toBe('/src');
    expect(config.config?.Cmd).toEqual(templateImage.config.config?.Cmd);
    expect(config.config?.Labels).toMatchObject({ 'org.opencontainers.image.description': 'my notes', 'run.cog.version': expect.any(String) });
    expect(config.rootfs.diff_ids).toHaveLength(templateImage.config.rootfs.diff_ids.length + 1);
    expect(config.history).toHaveLength(templateImage.config.history!.length + 1);
    const layer = manifest.layers.at(-1)!;
    expect(layer.mediaType).toBe(MediaTypes.ociLayerTar);
    expect(config.rootfs.diff_ids.at(-1)).toBe(layer.digest);
    expect(out.bytes).toBe(layer.size);
    const names = (await listTar(await client.getBlob('acme/dog', layer.digest))).map((e) => e.name);
    expect(names).toEqual(['src/', 'src/weights/', 'src/weights/model_index.json', 'src/weights/unet/', 'src/weights/unet/x.bin']);
  });

  it('mounts the template layers instead of uploading them when both live in the same registry', async () => {
    // Prepare
    const target = new RegistryClient({ baseUrl: registry.url });
    const mounts = vi.spyOn(target, 'mountBlob');
    const uploads = vi.spyOn(target, 'uploadBlob');
    const templateLayers = (await client.getManifest(TEMPLATE, template)).manifest.layers;

    // Act
    await appendLayer({
      source: client,
      sourceRepo: TEMPLATE,
      sourceRef: template,
      target,
      targetRepo: 'acme/cat',
      tag: 'v1',
      layer: () => tarDirectory(weights),
      labels: {},
    });

    // Assess: one mount per template layer, all accepted; only the new layer and the config uploaded.
    expect(mounts.mock.calls.map((c) => c[1])).toEqual(templateLayers.map((l) => l.digest));
    for (const r of mounts.mock.results) await expect(r.value).resolves.toBe(true);
    expect(uploads).toHaveBeenCalledTimes(2);
    for (const l of templateLayers) expect(await target.hasBlob('acme/cat', l.digest)).toBe(true);
  });

  it('copies the template layers blob to blob into another registry', async () => {
    // Prepare
    const other = await startRegistry();
    try {
      const target = new RegistryClient({ baseUrl: other.url });
      const mounts = vi.spyOn(target, 'mountBlob');

      // Act
      const out = await appendLayer({
        source: client,
        sourceRepo: TEMPLATE,
        sourceRef: `latest`,
        target,
        targetRepo: 'acme/dog',
        tag: 'v1',
        layer: () => tarDirectory(weights),
        labels: {},
      });

      // Assess
      expect(mounts).not.toHaveBeenCalled();
      const { manifest } = await target.getManifest('acme/dog', out.manifestDigest);
      for (const l of manifest.layers) expect(await target.hasBlob('acme/dog', l.digest)).toBe(true);
      expect(manifest.annotations?.['org.opencontainers.image.base.digest']).toBe(template);
    } finally {
      await other.stop();
    }
  });

  it('keeps the Docker v2 media types of a Docker template', async () => {
    // Prepare
    const docker = await createDemoTemplate(client, 'templates/docker-template', 'latest', 'docker');

    // Act
    const out = await appendLayer({
      source: client,
      sourceRepo: 'templates/docker-template',
      sourceRef: docker,
      target: client,
      targetRepo: 'acme/docker',
      tag: 'v1',
      layer: () => tarDirectory(weights),
      labels: {},
    });

    // Assess
    const { manifest, mediaType } = await client.getManifest('acme/docker', out.manifestDigest);
    expect(mediaType).toBe(MediaTypes.dockerManifest);
    expect(manifest.config.mediaType).toBe(MediaTypes.dockerConfig);
    expect(manifest.layers.at(-1)!.mediaType).toBe(MediaTypes.dockerLayerTar);
  });

  it('resolves an image index to its linux/amd64 image', async () => {
    // Prepare: an index whose arm64 entry points to nothing, so picking it would fail.
    const amd64 = await client.getManifest(TEMPLATE, template);
    const index = {
      schemaVersion: 2,
      mediaType: MediaTypes.ociIndex,
      manifests: [
        { mediaType: MediaTypes.ociManifest, digest: `sha256:${'0'.repeat(64)}`, size: 1, platform: { os: 'linux', architecture: 'arm64' } },
        { mediaType: MediaTypes.ociManifest, digest: template, size: amd64.raw.length, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    };
    await expect(
      client.putManifest(TEMPLATE, 'multi', Buffer.from(JSON.stringify(index)), MediaTypes.ociIndex),
    ).rejects.toMatchObject({ status: 400 });
    index.manifests.shift();
    const indexDigest = await client.putManifest(TEMPLATE, 'multi', Buffer.from(JSON.stringify(index)), MediaTypes.ociIndex);

    // Act
    const resolved = await client.getManifest(TEMPLATE, 'multi');

    // Assess
    expect(indexDigest).not.toBe(template);
    expect(resolved.digest).toBe(template);
    expect(resolved.raw.equals(amd64.raw)).toBe(true);
  });

  it('refuses a template digest that is not in the registry, naming the registry error', async () => {
    const missing = `sha256:${createHash('sha256').update('nothing').digest('hex')}`;
    await expect(
      appendLayer({ source: client, sourceRepo: TEMPLATE, sourceRef: missing, target: client, targetRepo: 'acme/x', tag: 'v1', layer: () => tarDirectory(weights), labels: {} }),
    ).rejects.toMatchObject({ name: 'RegistryError', status: 404, code: 'MANIFEST_UNKNOWN' });
  });
});
