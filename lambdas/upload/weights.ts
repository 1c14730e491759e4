/**
 * `GET /v1/trainings/{id}/weights`: the `output.weights` of a Trainings-API training. The staged
 * archive is never public: a token that may read the training gets a redirect to a presigned
 * GET that expires after WEIGHTS_URL_SECONDS. On this function because it already holds the
 * S3 client and the presigner, which the api function leaves out to start fast.
 */
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ApiError, notFound } from '#shared/errors';
import { canUse } from '#shared/owners';
import { isMissingObject } from '#shared/s3-missing';
import type { Store } from '#shared/store';
import type { UploadDeps } from './core.ts';

export const WEIGHTS_URL_SECONDS = 5 * 60;

/**
 * Where stage-weights stages an archive: under staged/, or where a SageMaker job left it. This
 * function may read both (infra/functions.ts) and is not granted s3:ListBucket, so S3 answers
 * a key there that has expired with 403, not 404: a 403 on such a key means it is gone. Any
 * other key's 403 stays an error.
 */
const STAGED_KEY = /^(staged\/|sagemaker\/[^/]+\/output\/)/;

export type WeightsDeps = UploadDeps & { store: Pick<Store, 'getTraining'> };

/** The presigned URL of a succeeded training's staged weights; 404, 409 or 410 otherwise. */
export async function weightsUrl(d: WeightsDeps, owners: string[], id: string): Promise<string> {
  const t = /^[a-z0-9]{20,40}$/.test(id) ? await d.store.getTraining(id) : null;
  if (!t || !canUse(owners, t.owner)) throw notFound(`training ${id} not found`);
  if (t.status !== 'succeeded' || !t.staged) {
    throw new ApiError(409, `training ${id} is ${t.status}; its weights can be downloaded once it has succeeded`);
  }
  const { key } = t.staged;
  try {
    await d.s3.send(new HeadObjectCommand({ Bucket: d.bucket, Key: key }));
  } catch (e) {
    if (!(STAGED_KEY.test(key) && isMissingObject(e))) throw e;
    throw new ApiError(410, `the weights of training ${id} have expired (staged archives are kept retention.staged_archive_days); the model's versions still hold them`);
  }
  const name = key.split('/').pop()!;
  return getSignedUrl(d.s3, new GetObjectCommand({ Bucket: d.bucket, Key: key, ResponseContentDisposition: `attachment; filename="${name}"` }), {
    expiresIn: WEIGHTS_URL_SECONDS,
  });
}
