/**
 * What a build step finds on AWS, on loopback: a staged output.zip in S3 (s3rver), the demo
 * template in a real registry, and the build environment the state machine passes. Shared by
 * the append buildspec test and the docker/append parity test.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createBucket, startS3 } from '#infra/local/s3';
import { RegistryClient } from '#shared/oci/registry';
import { createDemoTemplate } from '#shared/oci/template';
import { startRegistry, type TestRegistry } from '#test-helpers/registry';
import { zip } from '#test-helpers/zips';

export const TRAINING_ID = 'parity0123456789abcd';
/** Stage-weights hands them over in S3; both builds label the image with them byte for byte. */
export const NOTES = `notes with "quotes", $HOME and\na second line\n`;
const BUCKET = 'dreambooth-local';
const KEY = `staged/${TRAINING_ID}/output.zip`;
const NOTES_KEY = `staged/${TRAINING_ID}/build/notes.txt`;

/** The trainer's output: a diffusers layout, nested folders, binary and text, stored and deflated. */
export const WEIGHTS = {
  'model_index.json': JSON.stringify({ _class_name: 'StableDiffusionPipeline' }),
  'unet/config.json': '{"sample_size": 64}',
  'unet/diffusion_pytorch_model.safetensors': Buffer.alloc(300_000, 7),
  'text_encoder/model.safetensors': Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 251)),
  'scheduler/scheduler_config.json': '{}',
};

export interface BuildFixture {
  registry: TestRegistry;
  s3: S3Client;
  /** What the SDK inside a build needs to reach s3rver. */
  awsEnv: Record<string, string>;
  /** The state machine's environment overrides for one build into `repository` (under the registry). */
  buildEnv(repository: string): Record<string, string>;
  stop(): Promise<void>;
}

export async function startBuildFixture(): Promise<BuildFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'build-fixture-'));
  const registry = await startRegistry();
  const s3Server = await startS3(join(dir, 's3'));
  const awsEnv = {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_ENDPOINT_URL_S3: s3Server.url,
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
  };
  const s3 = new S3Client({
    region: awsEnv.AWS_REGION,
    endpoint: s3Server.url,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  await createBucket(s3, BUCKET);
  const items = Object.entries(WEIGHTS).map(([name, data], i) => ({ name, data, compress: i % 2 === 0 }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: KEY, Body: await zip(items) }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: NOTES_KEY, Body: NOTES }));
  const template = await createDemoTemplate(new RegistryClient({ baseUrl: registry.url }), 'templates/vanilla-template', 'latest');

  return {
    registry,
    s3,
    awsEnv,
    buildEnv: (repository) => ({
      TRAINING_ID,
      WEIGHTS_S3_URI: `s3://${BUCKET}/${KEY}`,
      TEMPLATE_IMAGE: `${registry.host}/templates/vanilla-template@${template}`,
      IMAGE_REPOSITORY: `${registry.host}/${repository}`,
      IMAGE_TAG: TRAINING_ID,
      NOTES_S3_URI: `s3://${BUCKET}/${NOTES_KEY}`,
    }),
    async stop() {
      s3.destroy();
      await s3Server.close();
      await registry.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
