/**
 * The S3 SDK for the functions that use it on a few paths only: the api's predictions and
 * notify's prediction webhooks. They load it on first use (`lazyS3` in ./aws.ts, `import()`), and
 * in their deployed bundles it is a file of its own beside index.js (infra/constructs/function.ts),
 * so a cold start does not parse it: about 60 ms of the api's.
 */
import { S3Client } from '@aws-sdk/client-s3';

export { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
export { getSignedUrl } from '@aws-sdk/s3-request-presigner';

// Path-style addressing works on AWS and on every S3-compatible endpoint (as ./aws.ts's s3).
export const newS3Client = () => new S3Client({ forcePathStyle: true });
