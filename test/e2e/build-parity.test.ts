/**
 * Parity of the two build strategies: from the same staged zip, local mode's docker build
 * (buildspecs/build-model.yml: docker build + push) and its append build give images that run
 * the same: entrypoint, command, workdir, env, labels, and the same files under /src/weights.
 * Needs a docker engine and a registry: skipped with the reason outside CI, a failure in CI.
 */
import { createHash } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { extract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImageConfig } from '#shared/oci/append';
import { RegistryClient } from '#shared/oci/registry';
import { runLocalBuild, type BuildStrategy } from '#infra/local/codebuild/build-model';
import { requireDocker, requireRegistry } from '#test-helpers/capabilities';
import { NOTES, startBuildFixture, TRAINING_ID, WEIGHTS, type BuildFixture } from '#test-helpers/build-fixture';

const docker = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const skipped = 'build parity (it builds with docker and pulls both images)';
const runs = !requireDocker(skipped).skip && !requireRegistry(skipped).skip;

/** sha256 of every regular file under src/weights/ of a pulled image's filesystem. */
async function weightsOf(image: string): Promise<Record<string, string>> {
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
      if (entry.header.type === 'file' && name.startsWith('src/weights/')) files[name.slice('src/weights/'.length)] = hash.digest('hex');
    }
    return files;
  } finally {
    docker('rm', id);
  }
}

describe.skipIf(!runs)('docker and append builds from one staged zip', () => {
  let fx: BuildFixture;
  const images: Partial<Record<BuildStrategy, string>> = {};

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
      images[strategy] = out.Build.ExportedEnvironmentVariables.find((v) => v.Name === 'IMAGE_URI')!.Value;
    }
  }, 300_000);
  afterAll(async () => {
    for (const image of Object.values(images)) {
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

  it('puts the same weights at /src/weights', async () => {
    const expected = Object.fromEntries(
      Object.entries(WEIGHTS).map(([name, data]) => [name, createHash('sha256').update(data).digest('hex')]),
    );
    expect(await weightsOf(images.docker!)).toEqual(expected);
    expect(await weightsOf(images.append!)).toEqual(expected);
  }, 120_000);
});
