/**
 * A registry that is down when the build starts: the append build retries, then pushes the one
 * image; a registry that never comes back fails the build with the reason.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '#shared/oci/registry';
import { BuildImageEnv } from '#shared/build-env';
import { buildImage } from '#codebuild/build-image/core';
import { freePort } from '#infra/local/ecr';
import { requireRegistry } from '#test-helpers/capabilities';
import { startBuildFixture, type BuildFixture } from '#test-helpers/build-fixture';

const available = !requireRegistry('the append build while its registry is down').skip;
let fx: BuildFixture;
beforeAll(async () => {
  if (available) fx = await startBuildFixture();
}, 60_000);
afterAll(() => fx?.stop());

/** A TCP front for the registry on `port`, opened only when asked. */
function front(port: number, target: number) {
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    const close = () => (client.destroy(), upstream.destroy());
    client.on('error', close);
    upstream.on('error', close);
  });
  return {
    open: () => new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r())),
    close: () => new Promise<void>((r) => (server.listening ? server.close(() => r()) : r())),
  };
}

const servingAdapter = Buffer.from('# the adapter\n');

const storeFor = (repository: string) => {
  const slash = repository.indexOf('/');
  return { store: new RegistryClient({ baseUrl: `http://${repository.slice(0, slash)}`, timeoutMs: 5000 }), repo: repository.slice(slash + 1) };
};

describe.runIf(available)('the append build while the registry is down', () => {
  it('retries until the registry answers, then pushes one image', async () => {
    const port = await freePort();
    const proxy = front(port, Number(fx.registry.host.split(':')[1]));
    const env = BuildImageEnv.parse({ ...fx.buildEnv('acme/retried'), IMAGE_REPOSITORY: `127.0.0.1:${port}/acme/retried` });
    const log: string[] = [];
    // The registry comes back when the build has seen it down (an event, not a clock).
    // biome-ignore lint/correctness/noUnusedVariables: read by `??=` below, so the proxy opens once
    let opened: Promise<void> | undefined;
    const record = (line: string) => {
      log.push(line);
      if (line.startsWith('registry unavailable')) opened ??= proxy.open();
    };
    try {
      const out = await buildImage(env, { s3: fx.s3, storeFor, log: record, retryDelaysMs: [400, 800, 1600, 3200], servingAdapter });
      expect(out.IMAGE_DIGEST).toMatch(/^[0-9a-f]{64}$/);
      expect(log.some((l) => l.startsWith('registry unavailable'))).toBe(true);
      // The one version: what the registry holds under the tag is what the build reported.
      const head = await new RegistryClient({ baseUrl: fx.registry.url }).headManifest('acme/retried', env.IMAGE_TAG);
      expect(head?.digest).toBe(`sha256:${out.IMAGE_DIGEST}`);
    } finally {
      await proxy.close();
    }
  });

  it('gives up with the reason when the registry never comes back', async () => {
    const port = await freePort();
    const env = BuildImageEnv.parse({ ...fx.buildEnv('acme/never'), IMAGE_REPOSITORY: `127.0.0.1:${port}/acme/never` });
    const log: string[] = [];
    const err = await buildImage(env, { s3: fx.s3, storeFor, log: (l) => log.push(l), retryDelaysMs: [100, 200], servingAdapter }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/ECONNREFUSED|connect/i);
    expect(log.filter((l) => l.startsWith('registry unavailable'))).toHaveLength(2);
  });
});
