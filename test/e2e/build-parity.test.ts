/**
 * Parity of the two build strategies: from the same staged zip, local mode's docker build
 * (buildspecs/build-model.yml: docker build + push) and its append build give images that run
 * the same: entrypoint, command, workdir, env, labels, and the same files under /src/weights;
 * and each pushes the version's SageMaker variant (IMAGE_SERVING_URI) the same way: the version's
 * layers plus one adapter layer, the adapter's entrypoint and `serve`, the version's labels plus
 * the digest of its weights layer.
 * Needs a docker engine and a registry: skipped with the reason outside CI, a failure in CI.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { extract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImageConfig } from '#shared/oci/append';
import { RegistryClient } from '#shared/oci/registry';
import { SERVING_ADAPTER_PATH, SERVING_CMD, SERVING_ENTRYPOINT, servingTag, WEIGHTS_DIGEST_LABEL } from '#shared/oci/serving-variant';
import { repoFile } from '#test-helpers/paths';
import { runLocalBuild, type BuildStrategy } from '#infra/local/codebuild/build-model';
import { requireDocker, requireRegistry } from '#test-helpers/capabilities';
import { NOTES, startBuildFixture, TRAINING_ID, WEIGHTS, type BuildFixture } from '#test-helpers/build-fixture';

const docker = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const skipped = 'build parity (it builds with docker and pulls both images)';
const runs = !requireDocker(skipped).skip && !requireRegistry(skipped).skip;

/** sha256 of every regular file under `prefix` of a pulled image's filesystem, by its path below it. */
async function filesOf(image: string, prefix: string): Promise<Record<string, string>> {
  docker('pull', '-q', image);
  const id = docker('create', image).trim();
  try {
    const files: Record<string, string> = {};
    const ex = extract();
    const exported = spawn('docker', ['export', id], { stdio: ['ignore', 'pipe', 'inherit'] });
    exported.stdout.pipe(ex);
    for await (const entry of ex) {
      const hash = createHash('sha256');
      for await (const chunk of entry) hash.update(chunk as Buffer);
      const name = entry.header.name.replace(/^\.?\//, '');
      if (entry.header.type === 'file' && name.startsWith(prefix)) files[name.slice(prefix.length)] = hash.digest('hex');
    }
    return files;
  } finally {
    docker('rm', id);
  }
}

const weightsOf = (image: string) => filesOf(image, 'src/weights/');
/** sha256 of the file at `path` (absolute) in a pulled image. */
const fileOf = async (image: string, path: string) => (await filesOf(image, path.slice(1)))[''];

describe.skipIf(!runs)('docker and append builds from one staged zip', () => {
  let fx: BuildFixture;
  const images: Partial<Record<BuildStrategy, string>> = {};
  const variants: Partial<Record<BuildStrategy, string>> = {};

  beforeAll(async () => {
    fx = await startBuildFixture();
    for (const strategy of ['docker', 'append'] as const) {
      const out = await runLocalBuild(
        { EnvironmentVariablesOverride: Object.entries(fx.buildEnv(`acme/${strategy}`)).map(([Name, Value]) => ({ Name, Value })) },
        {
          strategy,
          registryHost: fx.registry.host,
          s3: fx.s3,
          env: { ...fx.awsEnv, DOCKER_HOST: process.env.DOCKER_HOST },
          log: () => undefined,
          limits: { maxEntries: 100, maxBytes: 10 ** 8 },
        },
        new AbortController().signal,
      );
      const exported = (name: string) => out.Build.ExportedEnvironmentVariables.find((v) => v.Name === name)?.Value;
      images[strategy] = exported('IMAGE_URI');
      variants[strategy] = exported('IMAGE_SERVING_URI');
    }
  }, 300_000);
  afterAll(async () => {
    for (const image of [...Object.values(images), ...Object.values(variants)]) {
      try {
        docker('rmi', image!);
      } catch {
        // Never pulled: nothing to remove.
      }
    }
    await fx?.stop();
  });

  it('gives the same entrypoint, command, workdir, env and labels', async () => {
    // docker's view of its own image vs the appended config as pushed.
    const built = JSON.parse(docker('image', 'inspect', '--format', '{{json .Config}}', images.docker!));
    const [repo, digest] = images.append!.slice(fx.registry.host.length + 1).split('@');
    const { config } = await readImageConfig(new RegistryClient({ baseUrl: fx.registry.url }), repo!, digest!);
    const pick = (c: Record<string, unknown>) => ({
      Entrypoint: c.Entrypoint,
      Cmd: c.Cmd,
      WorkingDir: c.WorkingDir,
      Env: c.Env,
      Labels: c.Labels,
      ExposedPorts: c.ExposedPorts,
    });
    expect(pick(config.config as Record<string, unknown>)).toEqual(pick(built));
    expect(built.Labels).toMatchObject({ 'org.opencontainers.image.description': NOTES, 'ai.dreambooth.training-id': TRAINING_ID });
    expect(built.WorkingDir).toBe('/src');
  });

  it('pushes the SageMaker variant of the version on both paths, alike', async () => {
    const registry = new RegistryClient({ baseUrl: fx.registry.url });
    const read = async (image: string) => {
      const [repo, digest] = image.slice(fx.registry.host.length + 1).split('@');
      return readImageConfig(registry, repo!, digest!);
    };
    const seen: Record<string, unknown>[] = [];
    for (const strategy of ['docker', 'append'] as const) {
      const version = images[strategy]!;
      const variant = variants[strategy];
      expect(variant, `${strategy}: IMAGE_SERVING_URI`).toMatch(new RegExp(`^${fx.registry.host}/acme/${strategy}@sha256:[0-9a-f]{64}$`));
      // Tagged beside the version, as the docs promise.
      const tag = servingTag(version.split('@')[1]!);
      expect((await registry.headManifest(`acme/${strategy}`, tag))?.digest).toBe(variant!.split('@')[1]);
      const [v, s] = [await read(version), await read(variant!)];
      // Every layer of the version shared, plus one small layer holding the adapter.
      expect(s.config.rootfs.diff_ids.slice(0, -1)).toEqual(v.config.rootfs.diff_ids);
      expect(s.manifest.layers.slice(0, -1)).toEqual(v.manifest.layers);
      expect(s.manifest.layers.at(-1)!.size).toBeLessThan(64 * 1024);
      const labels = (s.config.config?.Labels ?? {}) as Record<string, string>;
      expect(labels).toEqual({ ...(v.config.config?.Labels as Record<string, string>), [WEIGHTS_DIGEST_LABEL]: v.config.rootfs.diff_ids.at(-1) });
      expect(s.config.config?.Entrypoint).toEqual(SERVING_ENTRYPOINT);
      expect(s.config.config?.Cmd).toEqual(SERVING_CMD);
      const { [WEIGHTS_DIGEST_LABEL]: _weights, ...rest } = labels;
      seen.push({ ...s.config.config, Labels: rest });
    }
    // The rest of the run config as on the version's parity: the same on both paths.
    const pick = (c: Record<string, unknown>) => ({ Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, Env: c.Env, Labels: c.Labels, ExposedPorts: c.ExposedPorts });
    expect(pick(seen[0]!)).toEqual(pick(seen[1]!));
    // The adapter in the variant is the repository's, byte for byte, at its path.
    const expected = createHash('sha256').update(readFileSync(repoFile('serving/sagemaker_adapter.py'))).digest('hex');
    for (const strategy of ['docker', 'append'] as const) expect(await fileOf(variants[strategy]!, SERVING_ADAPTER_PATH)).toBe(expected);
  }, 120_000);

  it('puts the same weights at /src/weights', async () => {
    const expected = Object.fromEntries(
      Object.entries(WEIGHTS).map(([name, data]) => [name, createHash('sha256').update(data).digest('hex')]),
    );
    expect(await weightsOf(images.docker!)).toEqual(expected);
    expect(await weightsOf(images.append!)).toEqual(expected);
  }, 120_000);
});
