/**
 * buildspecs/append-model.yml with the script the append projects ship (codebuild/build-image
 * bundled by the construct's own esbuild call), run through sh as CodeBuild runs it, against a
 * real registry and s3rver. It must make the very image local mode's append build makes.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImageConfig } from '#shared/oci/append';
import { RegistryClient } from '#shared/oci/registry';
import { runLocalBuild } from '#infra/local/codebuild/build-model';
import { bundleBuildImage } from '#infra/constructs/build';
import { requireRegistry } from '#test-helpers/capabilities';
import { NOTES, startBuildFixture, TRAINING_ID, type BuildFixture } from '#test-helpers/build-fixture';
import { repoFile } from '#test-helpers/paths';

const spec = parse(await readFile(repoFile('buildspecs/append-model.yml'), 'utf8'));
const run = promisify(execFile);

/** The build phase's commands in one sh, then the exported variables, as CodeBuild reads them. */
async function runBuildspec(cwd: string, env: Record<string, string>) {
  const exported: string[] = spec.env['exported-variables'];
  const script = ['set -e', ...spec.phases.build.commands, ...exported.map((v) => `echo "${v}=$${v}"`)].join('\n');
  const { stdout } = await run('sh', ['-c', script], { cwd, env: { PATH: process.env.PATH!, ...env } });
  return Object.fromEntries(stdout.split('\n').filter((l) => /^IMAGE_\w+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe.skipIf(requireRegistry('the append buildspec test (it pushes to a registry, as CodeBuild does)').skip)('the append buildspec with the bundled script', () => {
  let fx: BuildFixture;
  let source: string;

  beforeAll(async () => {
    fx = await startBuildFixture();
    source = await mkdtemp(join(tmpdir(), 'append-source-'));
    bundleBuildImage(source);
  });
  afterAll(async () => {
    await fx?.stop();
    if (source) await rm(source, { recursive: true, force: true });
  });

  it('pushes the weights onto the template, exports the version, and matches local mode\'s append build', async () => {
    // Act: the CodeBuild way, then local mode's way, into two repositories.
    const exported = await runBuildspec(source, {
      ...fx.awsEnv,
      ...fx.buildEnv('acme/codebuild'),
      REGISTRY_TYPE: 'oci',
      REGISTRY_HOST: fx.registry.host,
    });
    const local = await runLocalBuild(
      { EnvironmentVariablesOverride: Object.entries(fx.buildEnv('acme/local')).map(([Name, Value]) => ({ Name, Value })) },
      { strategy: 'append', registryHost: fx.registry.host, s3: fx.s3, env: {}, log: () => undefined, limits: { maxEntries: 100, maxBytes: 10 ** 8 } },
      new AbortController().signal,
    );

    // Assess
    expect(exported.IMAGE_DIGEST).toMatch(/^[0-9a-f]{64}$/);
    expect(exported.IMAGE_URI).toBe(`${fx.registry.host}/acme/codebuild@sha256:${exported.IMAGE_DIGEST}`);
    const localDigest = local.Build.ExportedEnvironmentVariables.find((v) => v.Name === 'IMAGE_DIGEST')!.Value;
    expect(exported.IMAGE_DIGEST).toBe(localDigest);
    const client = new RegistryClient({ baseUrl: fx.registry.url });
    const { config, manifest } = await readImageConfig(client, 'acme/codebuild', `sha256:${exported.IMAGE_DIGEST}`);
    expect(config.config?.Labels).toMatchObject({ 'org.opencontainers.image.description': NOTES, 'ai.dreambooth.training-id': TRAINING_ID });
    expect(config.config?.WorkingDir).toBe('/src');
    expect(manifest.layers).toHaveLength(2);

    // The SageMaker variant, pushed beside the version, the same from both ways.
    const serving = await readImageConfig(client, 'acme/codebuild', `${exported.IMAGE_DIGEST}-sagemaker`);
    expect(exported.IMAGE_SERVING_URI).toBe(`${fx.registry.host}/acme/codebuild@${serving.digest}`);
    expect(serving.manifest.layers.slice(0, 2)).toEqual(manifest.layers);
    expect(serving.config.config?.Entrypoint).toEqual(['python3', '/opt/dreambooth/sagemaker_adapter.py']);
    expect(serving.config.config?.Labels?.['ai.dreambooth.weights-digest']).toBe(manifest.layers[1]!.digest);
    const localServing = local.Build.ExportedEnvironmentVariables.find((v) => v.Name === 'IMAGE_SERVING_URI')!.Value;
    expect(localServing.split('@')[1]).toBe(serving.digest);
  });

  it('fails with one readable line when the staged archive is missing', async () => {
    const env = { ...fx.awsEnv, ...fx.buildEnv('acme/missing'), WEIGHTS_S3_URI: 's3://dreambooth-local/staged/none/output.zip', REGISTRY_TYPE: 'oci', REGISTRY_HOST: fx.registry.host };
    const failed = await runBuildspec(source, env).then(() => null, (e: { stderr: string; code: number }) => e);
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toMatch(/^append build failed: cannot read the staged archive s3:\/\/dreambooth-local\/staged\/none\/output.zip: it does not exist$/m);
    expect(failed?.stderr).not.toContain('S3RVER');
  });
});
