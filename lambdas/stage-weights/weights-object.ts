/**
 * A weights version's weights: the staged output hashed (streamed, constant memory) and copied
 * to its content-addressed key, which no lifecycle rule expires. Idempotent: a retry finds the
 * object in place and copies nothing; the same bytes from another training share the object.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CopyObjectCommand, GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Deps as AllDeps } from '#shared/deps';
import { isMissingObject } from '#shared/s3-missing';
import type { StagedWeights } from '#shared/steps';
import type { TrainingRecord } from '#shared/training';
import { contentTypeFor } from '#shared/weights-format';
import { weightsKey } from '#shared/weights-version';

type Deps = AllDeps<'s3'>;

/** CopyObject's limit; larger objects are copied through the function. */
const COPY_MAX_BYTES = 5 * 1024 ** 3;

export async function storeWeightsObject(d: Deps, stagedKey: string, size: number, copyMax = COPY_MAX_BYTES): Promise<StagedWeights> {
  const sha256 = await sha256Of(d, stagedKey);
  const key = weightsKey(sha256);
  if ((await sizeOf(d, key)) !== size) {
    await copy(d, stagedKey, key, size, copyMax);
  }
  return { key, size, sha256 };
}

async function sha256Of(d: Deps, key: string): Promise<string> {
  const body = (await d.s3.send(new GetObjectCommand({ Bucket: d.bucket, Key: key }))).Body as Readable;
  const hash = createHash('sha256');
  for await (const chunk of body) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function sizeOf(d: Deps, key: string): Promise<number | null> {
  try {
    return (await d.s3.send(new HeadObjectCommand({ Bucket: d.bucket, Key: key }))).ContentLength ?? null;
  } catch (e) {
    if (isMissingObject(e)) return null;
    throw e;
  }
}

/**
 * A re-template of a weights version whose staged archive (`key`, the source's) has expired: the
 * version's weights object, copied to this training's own staged/ folder under the archive's name
 * (the build installs it by that name). Not back to `key`: a SageMaker job's output lies under
 * sagemaker/, which this function may only read. Null when `t` re-templates nothing, or a
 * version that has no weights object.
 */
export async function restageFromWeights(d: Deps, t: TrainingRecord, key: string): Promise<{ key: string; size: number } | null> {
  if (!t.retemplate_of) return null;
  const source = await d.store.getTraining(t.retemplate_of);
  const version = source?.version ? await d.store.getVersion(source.model, source.version) : null;
  if (!version?.weights || (await sizeOf(d, version.weights.key)) === null) return null;
  const restaged = `staged/${t.id}/${key.split('/').pop()}`;
  await copy(d, version.weights.key, restaged, version.weights.size);
  return { key: restaged, size: version.weights.size };
}

/** Server-side up to CopyObject's limit, through the function beyond it. */
async function copy(d: Deps, from: string, to: string, size: number, copyMax = COPY_MAX_BYTES): Promise<void> {
  if (size <= copyMax) {
    await d.s3.send(new CopyObjectCommand({ Bucket: d.bucket, Key: to, CopySource: `${d.bucket}/${from}`, ContentType: contentTypeFor(to), MetadataDirective: 'REPLACE' }));
    return;
  }
  const body = (await d.s3.send(new GetObjectCommand({ Bucket: d.bucket, Key: from }))).Body as Readable;
  await new Upload({ client: d.s3, params: { Bucket: d.bucket, Key: to, Body: body, ContentType: contentTypeFor(to) }, partSize: 64 * 1024 * 1024, queueSize: 4 }).done();
}
