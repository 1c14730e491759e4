/**
 * A real docker engine pulls an appended image (Docker v2 and OCI manifests with
 * uncompressed layers) and sees the weights. Needs a docker engine and a registry (required in CI).
 */
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendLayer } from '#shared/oci/append';
import { RegistryClient } from '#shared/oci/registry';
import { tarEntries } from '#shared/oci/tar';
import { createDemoTemplate } from '#shared/oci/template';
import { requireDocker, requireRegistry } from '#test-helpers/capabilities';
import { startRegistry, type TestRegistry } from '#test-helpers/registry';

const docker = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const runs = !requireDocker('docker pulling an appended image').skip && !requireRegistry('docker pulling an appended image').skip;

describe.skipIf(!runs)('docker pulls an appended image', () => {
  let registry: TestRegistry;

  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(() => registry?.stop());

  it.each(['docker', 'oci'] as const)('%s manifest: the weights are at /src/weights', async (format) => {
    // Prepare
    const client = new RegistryClient({ baseUrl: registry.url });
    const template = await createDemoTemplate(client, `templates/${format}`, 'latest', format);

    // Act
    const out = await appendLayer({
      source: client,
      sourceRepo: `templates/${format}`,
      sourceRef: template,
      target: client,
      targetRepo: `acme/${format}`,
      tag: 'v1',
      layer: () => tarEntries([{ path: 'model_index.json', size: 2, stream: () => Readable.from([Buffer.from('{}')]) }]),
      labels: { note: format },
    });

    // Assess: the image has no shell or ls, so list its filesystem through a created container.
    docker('pull', out.image);
    const id = docker('create', out.image).trim();
    try {
      const files = execFileSync('sh', ['-c', `docker export ${id} | tar -t`], { encoding: 'utf8' }).split('\n');
      expect(files).toEqual(expect.arrayContaining(['src/predict.py', 'src/weights/model_index.json']));
      expect(docker('image', 'inspect', '-f', '{{.Config.WorkingDir}} {{index .Config.Labels "note"}}', out.image).trim()).toBe(`/src ${format}`);
    } finally {
      docker('rm', id);
      docker('rmi', out.image);
    }
  });
});
