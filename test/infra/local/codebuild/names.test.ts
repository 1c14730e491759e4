/**
 * Local mode's image store stands for ECR: a build that pushes to a repository name ECR refuses
 * fails locally too, though a layout on disk (or distribution) would take it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OciLayout } from '#shared/oci/layout';
import { createDemoTemplate } from '#shared/oci/template';
import { createBucket, startS3, type LocalS3 } from '#infra/local/s3';
import { appendWorkers } from '#infra/local/codebuild/append';
import { BuildFailed, runLocalBuild } from '#infra/local/codebuild/build-model';
import { zip } from '#test-helpers/zips';

const BUCKET = 'dreambooth-local';
const KEY = 'staged/names0123456789abcdef/output.zip';

describe("local builds refuse the repository names ECR refuses", () => {
  let dir: string;
  let server: LocalS3;
  let s3: S3Client;
  let template: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'local-names-'));
    server = await startS3(join(dir, 's3'));
    s3 = new S3Client({ region: 'us-east-1', endpoint: server.url, forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, requestChecksumCalculation: 'WHEN_REQUIRED' });
    await createBucket(s3, BUCKET);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: KEY, Body: await zip([{ name: 'model_index.json', data: '{}' }]) }));
    const templates = join(dir, 'images', 'templates', 'vanilla');
    template = `oci:${templates}@${await createDemoTemplate(new OciLayout(templates), '', 'latest')}`;
  });
  afterAll(async () => {
    await appendWorkers.stop();
    s3?.destroy();
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const build = (repository: string, registryHost: string | null = null) =>
    runLocalBuild(
      {
        EnvironmentVariablesOverride: Object.entries({
          TRAINING_ID: 'names0123456789abcdef',
          WEIGHTS_S3_URI: `s3://${BUCKET}/${KEY}`,
          TEMPLATE_IMAGE: template,
          IMAGE_REPOSITORY: repository,
          IMAGE_TAG: 'names0123456789abcdef',
          NOTES: '',
        }).map(([Name, Value]) => ({ Name, Value })),
      },
      { strategy: 'append', registryHost, s3, env: {}, log: () => undefined, limits: { maxEntries: 100, maxBytes: 10 ** 8 } },
      new AbortController().signal,
    );
  const failure = (e: unknown) => JSON.parse((e as BuildFailed).message) as { Build: { BuildStatus: string }; log_tail: string };

  it('pushes acme/a-b into a layout, and refuses acme/a__b as ECR does', async () => {
    const ok = await build(`oci:${join(dir, 'images', 'acme', 'a-b')}`);
    expect(ok.Build.BuildStatus).toBe('SUCCEEDED');

    const refused = await build(`oci:${join(dir, 'images', 'acme', 'a__b')}`).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BuildFailed);
    expect(failure(refused)).toMatchObject({
      Build: { BuildStatus: 'FAILED' },
      log_tail: expect.stringMatching(/^ECR would refuse the repository name acme\/a__b: it must be "\/"-separated parts of lowercase letters and digits/),
    });
  });

  it.each(['acme/a--b', 'acme/cjw-', 'acme/a..b'])('refuses %s in the local registry before pushing', async (name) => {
    // Nothing listens on this port: the name is refused before the registry is asked.
    const refused = await build(`127.0.0.1:9/${name}`, '127.0.0.1:9').catch((e: unknown) => e);
    expect(failure(refused).log_tail).toBe(`ECR would refuse the repository name ${name}: it must be "/"-separated parts of lowercase letters and digits, with single ".", "_" or "-" only between them (ECR repository names)`);
  });
});
