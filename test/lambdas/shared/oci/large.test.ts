import { createCipheriv } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendLayer, readImageConfig } from '#shared/oci/append';
import { RegistryClient } from '#shared/oci/registry';
import { tarEntries } from '#shared/oci/tar';
import { createLargeTemplate } from '#shared/oci/template';
import { requireRegistry } from '#test-helpers/capabilities';
import { startRegistry, type TestRegistry } from '#test-helpers/registry';

const MB = 1024 * 1024;

/** Incompressible bytes made on the fly: nothing of this size is ever held in memory. */
function noise(bytes: number): Readable {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 1), Buffer.alloc(16));
  const zeros = Buffer.alloc(MB);
  return Readable.from((function* () {
    for (let left = bytes; left > 0; left -= MB) yield cipher.update(zeros.subarray(0, Math.min(MB, left)));
  })());
}

describe.skipIf(requireRegistry('large layers through a real registry').skip)('large layers', () => {
  let registry: TestRegistry;

  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(() => registry?.stop());

  it('streams a 200 MB weights layer onto a large template', async () => {
    // Prepare
    const client = new RegistryClient({ baseUrl: registry.url });
    const template = await createLargeTemplate(client, 'templates/large', 'latest', 16 * MB);
    const size = 200 * MB;

    // Act
    const out = await appendLayer({
      source: client,
      sourceRepo: 'templates/large',
      sourceRef: template,
      target: client,
      targetRepo: 'acme/large',
      tag: 'v1',
      layer: () => tarEntries([{ path: 'unet/diffusion_pytorch_model.bin', size, stream: () => noise(size) }]),
      labels: {},
    });

    // Assess
    const { manifest, config } = await readImageConfig(client, 'acme/large', out.manifestDigest);
    const layer = manifest.layers.at(-1)!;
    expect(layer.size).toBeGreaterThan(size);
    expect(manifest.layers[1].size).toBeGreaterThan(16 * MB);
    expect(config.rootfs.diff_ids.at(-1)).toBe(layer.digest);
    expect(await client.hasBlob('acme/large', layer.digest)).toBe(true);
  });
});
