/** S3 in local mode: s3rver in its worker thread (./storage-host.ts), and the bucket the stack creates on AWS. */
import { CreateBucketCommand, HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { startHosted, type AccessKey, type LocalS3 } from './storage-host.ts';

export type { AccessKey, LocalS3 };

export const startS3 = (directory: string, keys: AccessKey[] = []): Promise<LocalS3> => startHosted('s3', directory, keys);

export async function createBucket(s3: S3Client, bucket: string): Promise<void> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    // A HEAD answer has no body to name the error: say what local S3 answered.
    if (status !== 404) throw new Error(`local S3 answered HeadBucket ${bucket} with HTTP ${status ?? '?'} (${(err as Error).name})`, { cause: err });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  }
}
