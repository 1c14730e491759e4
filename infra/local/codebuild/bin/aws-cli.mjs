// `aws s3 cp s3://bucket/key <file|->` against AWS_ENDPOINT_URL_S3 (local mode's build shim); `-` is stdout, as the real CLI has it.
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';

const [service, command, from, to] = process.argv.slice(2);
if (service !== 's3' || command !== 'cp' || !from?.startsWith('s3://') || !to) {
  console.error(`local aws shim: only "aws s3 cp s3://bucket/key FILE|-" is available (got: ${process.argv.slice(2).join(' ')})`);
  process.exit(2);
}
const [, bucket, key] = from.match(/^s3:\/\/([^/]+)\/(.+)$/) ?? [];
const s3 = new S3Client({ forcePathStyle: true });
try {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  await pipeline(out.Body, to === '-' ? process.stdout : createWriteStream(to));
} catch (e) {
  console.error(`download failed: ${from}: ${e.name}: ${e.message}`);
  process.exit(1);
}
