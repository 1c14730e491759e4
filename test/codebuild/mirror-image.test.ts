/**
 * The trainer image mirror (codebuild/mirror-image) between two real registries: the source with
 * token auth (as r8.im and most registries), the target standing for the stack's ECR.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '#shared/oci/registry';
import { createDemoTemplate } from '#shared/oci/template';
import { mirrorImage, type RegistryFor } from '#codebuild/mirror-image/core';
import { describeLocalImages } from '#infra/local/ecr';
import { opensslAvailable, registryAvailable, startRegistry, type TestRegistry } from '#test-helpers/registry';

const auth = { username: 'trainer-reader', password: `pw-${Math.random().toString(36).slice(2)}` };

describe.skipIf(!registryAvailable() || !opensslAvailable())('mirroring a trainer image into ECR by digest', () => {
  let source: TestRegistry;
  let target: TestRegistry;
  let image: string;
  const lines: string[] = [];
  const registries = (credentials = auth): RegistryFor => (repository) => {
    const [host, ...rest] = repository.split('/');
    const reg = host === source.host ? new RegistryClient({ baseUrl: source.url, auth: credentials }) : new RegistryClient({ baseUrl: target.url });
    return { store: reg, repo: rest.join('/') };
  };

  beforeAll(async () => {
    source = await startRegistry({ auth });
    target = await startRegistry();
    const digest = await createDemoTemplate(new RegistryClient({ baseUrl: source.url, auth }), 'replicate/dreambooth', 'latest');
    image = `${source.host}/replicate/dreambooth@${digest}`;
  }, 60_000);
  afterAll(async () => {
    await source?.stop();
    await target?.stop();
  });

  it('copies blob to blob and keeps the digest; a second run finds it and copies nothing', async () => {
    const digest = image.split('@')[1]!;
    // Local mode's DescribeImages (the workflow's "is the image in ECR?") before and after.
    const describe = () => describeLocalImages({ RepositoryName: 'dreambooth/trainers/gpu', ImageIds: [{ ImageDigest: digest }] }, target.host);
    const before = (await describe().catch((e: unknown) => e)) as Error;
    expect(before.name).toBe('Ecr.ImageNotFoundException');
    expect(before.message).toContain(digest);
    const first = await mirrorImage(image, `${target.host}/dreambooth/trainers/gpu`, registries(), (l) => lines.push(l));
    expect(first.skipped).toBe(false);
    expect(first.copied).toBeGreaterThan(0);
    expect(first.digest).toBe(digest);
    expect(await describe()).toMatchObject({ ImageDetails: [{ repositoryName: 'dreambooth/trainers/gpu', imageDigest: digest }] });
    const mirrored = await new RegistryClient({ baseUrl: target.url }).getManifest('dreambooth/trainers/gpu', digest);
    expect(mirrored.digest).toBe(digest);

    const again = await mirrorImage(image, `${target.host}/dreambooth/trainers/gpu`, registries(), (l) => lines.push(l));
    expect(again).toEqual({ digest, skipped: true, copied: 0 });
    expect(lines.join('\n')).not.toContain(auth.password);
  });

  it('says the image is unreadable with the configured credentials', async () => {
    const err: Error = await mirrorImage(image, `${target.host}/dreambooth/trainers/other`, registries({ ...auth, password: 'wrong' }), () => undefined).catch((e) => e);
    expect(err.message).toContain('is not readable with the configured credentials');
    expect(err.message).toContain('source_credentials_secret');
    expect(err.message).not.toContain('wrong');
  });

  it('says the image does not exist', async () => {
    const missing = `${source.host}/replicate/dreambooth@sha256:${'0'.repeat(64)}`;
    const err: Error = await mirrorImage(missing, `${target.host}/dreambooth/trainers/missing`, registries(), () => undefined).catch((e) => e);
    expect(err.message).toBe(`the trainer image ${missing} does not exist at its registry (HTTP 404): check the trainer's image`);
  });
});
