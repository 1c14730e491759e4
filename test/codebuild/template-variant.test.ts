/**
 * A template's SageMaker variant made by the template variant project (codebuild/mirror-image with
 * MODE=template-variant) between two real registries: the template's own with token auth (as
 * r8.im), the target standing for the stack's ECR. Its layers are copied blob to blob, the
 * adapter's layer is added with SageMaker's entrypoint, and a second build finds the tag.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImageConfig } from '#shared/oci/append';
import { RegistryClient } from '#shared/oci/registry';
import { SERVING_ADAPTER_PATH, SERVING_CMD, SERVING_ENTRYPOINT, servingTag, WEIGHTS_DIGEST_LABEL } from '#shared/oci/serving-variant';
import { createDemoTemplate } from '#shared/oci/template';
import { makeTemplateVariant, type StoreFor } from '#codebuild/mirror-image/variant';
import { listTar, opensslAvailable, registryAvailable, startRegistry, type TestRegistry } from '#test-helpers/registry';
import { repoFile } from '#test-helpers/paths';

const auth = { username: 'template-reader', password: `pw-${Math.random().toString(36).slice(2)}` };

describe.skipIf(!registryAvailable() || !opensslAvailable())("a template variant made from the template's own registry", () => {
  let source: TestRegistry;
  let target: TestRegistry;
  let template: string;
  let digest: string;
  const lines: string[] = [];
  const adapter = () => readFile(repoFile('serving/sagemaker_adapter.py'));
  const stores: StoreFor = (repository) => {
    const [host, ...rest] = repository.split('/');
    const store = host === source.host ? new RegistryClient({ baseUrl: source.url, auth }) : new RegistryClient({ baseUrl: target.url });
    return { store, repo: rest.join('/') };
  };
  const ecr = () => new RegistryClient({ baseUrl: target.url });

  beforeAll(async () => {
    source = await startRegistry({ auth });
    target = await startRegistry();
    digest = await createDemoTemplate(new RegistryClient({ baseUrl: source.url, auth }), 'stability-ai/sdxl', 'latest');
    template = `${source.host}/stability-ai/sdxl@${digest}`;
  }, 60_000);
  afterAll(async () => {
    await source?.stop();
    await target?.stop();
  });

  it("copies the template's layers, adds the adapter and SageMaker's entrypoint, and tags it by the template's digest", async () => {
    const image = await makeTemplateVariant(template, `${target.host}/dreambooth/templates/sdxl`, stores, await adapter(), (l) =>
      lines.push(l),
    );
    const tag = servingTag(digest);
    const pushed = await ecr().getManifest('dreambooth/templates/sdxl', tag);
    expect(image).toBe(`${target.host}/dreambooth/templates/sdxl@${pushed.digest}`);

    const original = await readImageConfig(new RegistryClient({ baseUrl: source.url, auth }), 'stability-ai/sdxl', digest);
    const variant = await readImageConfig(ecr(), 'dreambooth/templates/sdxl', tag);
    // The template's layers, now in ECR (SageMaker pulls only from there), then the adapter's.
    expect(variant.manifest.layers.slice(0, -1)).toEqual(original.manifest.layers);
    for (const layer of original.manifest.layers) expect(await ecr().hasBlob('dreambooth/templates/sdxl', layer.digest)).toBe(true);
    expect(variant.config.config?.Entrypoint).toEqual(SERVING_ENTRYPOINT);
    expect(variant.config.config?.Cmd).toEqual(SERVING_CMD);
    expect(variant.config.config?.Labels).toEqual({
      ...original.config.config?.Labels,
      [WEIGHTS_DIGEST_LABEL]: original.config.rootfs.diff_ids.at(-1),
    });

    const last = variant.manifest.layers.at(-1)!;
    const entries = await listTar(await ecr().getBlob('dreambooth/templates/sdxl', last.digest));
    const file = entries.find((e) => `/${e.name}` === SERVING_ADAPTER_PATH)!;
    expect(createHash('sha256').update(file.body).digest('hex')).toBe(
      createHash('sha256')
        .update(await adapter())
        .digest('hex'),
    );
  });

  it('finds the variant on a second build and pushes nothing', async () => {
    const before = await ecr().getManifest('dreambooth/templates/sdxl', servingTag(digest));
    const again = await makeTemplateVariant(template, `${target.host}/dreambooth/templates/sdxl`, stores, await adapter(), (l) =>
      lines.push(l),
    );
    expect(again).toBe(`${target.host}/dreambooth/templates/sdxl@${before.digest}`);
    expect(lines.at(-1)).toContain('is already in ECR');
    expect(lines.join('\n')).not.toContain(auth.password);
  });

  it('refuses a template that is not pinned by digest', async () => {
    const err: Error = await makeTemplateVariant(
      `${source.host}/stability-ai/sdxl:latest`,
      `${target.host}/dreambooth/templates/x`,
      stores,
      await adapter(),
      () => undefined,
    ).catch((e) => e);
    expect(err.message).toContain('is not pinned by digest');
  });

  it('fails on a template its registry does not hold, and pushes no tag', async () => {
    const missing = `${source.host}/stability-ai/sdxl@sha256:${'0'.repeat(64)}`;
    await expect(
      makeTemplateVariant(missing, `${target.host}/dreambooth/templates/missing`, stores, await adapter(), () => undefined),
    ).rejects.toThrow();
    expect(await ecr().headManifest('dreambooth/templates/missing', servingTag('0'.repeat(64)))).toBeNull();
  });
});
