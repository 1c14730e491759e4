/**
 * What stage-weights hands the build: the per-build part of its environment (the contract is
 * lambdas/shared/build-env.ts), once the output is staged and checked.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { BuildOverrides } from '#shared/build-env';
import type { Config } from '#shared/config';
import type { Deps as AllDeps } from '#shared/deps';
import type { TrainingRecord } from '#shared/training';
import type { WeightsFormat } from '#shared/weights-format';

type Deps = AllDeps<'s3'>;

/** The build's overrides for training `t`, whose output is staged at `key` as `format`. */
export async function buildOverrides(d: Deps, t: TrainingRecord, registryHost: string, key: string, format: WeightsFormat): Promise<BuildOverrides> {
  return {
    TRAINING_ID: t.id,
    WEIGHTS_S3_URI: `s3://${d.bucket}/${key}`,
    WEIGHTS_FORMAT: format,
    TEMPLATE_IMAGE: `${t.template.repository}@sha256:${t.template.digest}`,
    IMAGE_REPOSITORY: imageRepository(d.config, registryHost, t.model),
    IMAGE_TAG: t.id,
    NOTES_S3_URI: await stageNotes(d, t),
  };
}

/** Where the model's image goes: `<registry>/<prefix>/<owner>/<name>`. */
export function imageRepository(config: Config, registryHost: string, model: string): string {
  const r = config.registry;
  if (r.type === 'ecr') return `${registryHost}/${r.repository_prefix}/${model}`;
  if (r.type === 'layout') return `oci:${r.dir}/${model}`;
  return `${r.host}/${model}`;
}

/**
 * The notes beside the staged weights, for the build to label the image with; CodeBuild refuses
 * an environment variable of more than 4,096 characters, and notes run to limits.notes_max_chars.
 * In a folder of its own: a staged output's name never holds a slash.
 */
async function stageNotes(d: Deps, t: TrainingRecord): Promise<string> {
  if (!t.notes) return '';
  const key = `staged/${t.id}/build/notes.txt`;
  await d.s3.send(new PutObjectCommand({ Bucket: d.bucket, Key: key, Body: t.notes, ContentType: 'text/plain; charset=utf-8' }));
  return `s3://${d.bucket}/${key}`;
}
