/**
 * `GET /v1/trainings/{id}/logs`: the trainer's whole log as text. The training's `logs` is its
 * tail (lambdas/shared/run-logs.ts); a log longer than that is in the bucket, and a token that
 * may read the training gets a redirect to a presigned GET of it (a log can pass Lambda's 6 MB
 * response). On this function because it already holds the S3 client and the presigner.
 */
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ApiError, notFound } from '#shared/errors';
import { canUse } from '#shared/owners';
import { logKey } from '#shared/run-logs';
import { isMissingObject } from '#shared/s3-missing';
import type { TrainingRecord } from '#shared/training';
import type { WeightsDeps } from './weights.ts';

export const LOGS_URL_SECONDS = 5 * 60;

export type TrainingLog = { text: string } | { url: string };

/** The record's log when it is whole, else a presigned URL of the bucket's copy; 404 or 410 otherwise. */
export async function trainingLog(d: WeightsDeps, owners: string[], id: string): Promise<TrainingLog> {
  const t = /^[a-z0-9]{20,40}$/.test(id) ? await d.store.getTraining(id) : null;
  if (!t || !canUse(owners, t.owner)) throw notFound(`training ${id} not found`);
  if (!inBucket(t)) return { text: t.logs ?? '' };
  const Key = logKey(t.id);
  try {
    await d.s3.send(new HeadObjectCommand({ Bucket: d.bucket, Key }));
  } catch (e) {
    // Without s3:ListBucket, S3 answers an expired key with 403: under logs/ that means gone.
    if (!isMissingObject(e)) throw e;
    throw new ApiError(410, `the whole log of training ${id} has expired (logs are kept retention.staged_archive_days); its \`logs\` still holds the last lines`);
  }
  const url = await getSignedUrl(d.s3, new GetObjectCommand({ Bucket: d.bucket, Key, ResponseContentType: 'text/plain; charset=utf-8' }), {
    expiresIn: LOGS_URL_SECONDS,
  });
  return { url };
}

/** The record keeps a tail shorter than the log it was cut from: the bucket holds the whole. */
const inBucket = (t: TrainingRecord) => (t.logs_length ?? 0) > (t.logs?.length ?? 0);
