/**
 * One staging run in its own process, so its peak RSS is its own: `stage <training id> <url>`
 * runs stage-weights' core as the Lambda does; `plain <file> <key>` is a plain multipart upload
 * of the same bytes with the same part size and queue. Prints `{seconds, peak_rss_mb}`.
 */
import { createReadStream } from 'node:fs';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { s3, secretsManager } from '#shared/aws';
import { baseDeps } from '#shared/deps';
import { ENV } from '#shared/env';
import { stageWeights } from '../lambdas/stage-weights/core.ts';

const [mode, a, b] = process.argv.slice(2);
const started = performance.now();
if (mode === 'stage') {
  await stageWeights({ ...baseDeps(), s3: s3(), secrets: secretsManager() }, { registryHost: 'bench.invalid' }, a!, b!);
} else if (mode === 'plain') {
  const upload = new Upload({
    client: new S3Client({ forcePathStyle: true }),
    params: { Bucket: process.env[ENV.bucket]!, Key: b!, Body: createReadStream(a!, { highWaterMark: 1024 * 1024 }) },
    partSize: 16 * 1024 * 1024,
    queueSize: 4,
  });
  await upload.done();
} else {
  throw new Error('usage: stage-child stage <training id> <url> | plain <file> <key>');
}
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ seconds, peak_rss_mb: process.resourceUsage().maxRSS / 1024 }));
