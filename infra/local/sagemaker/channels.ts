/**
 * A job's files between S3 and its `/opt/ml`, as SageMaker moves them: each input channel's S3
 * prefix into `input/data/<channel>/` (with `input/config/*.json`), the checkpoint prefix both
 * ways, and `model/` back out.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { TrainingJobFailed, type CreateTrainingJob } from './request.ts';

const s3Parts = (uri: string) => {
  const m = uri.match(/^s3:\/\/([^/]+)\/?(.*)$/);
  if (!m) throw new Error(`not an s3:// URI: ${uri}`);
  return { bucket: m[1]!, key: m[2]! };
};

export async function layOut(job: CreateTrainingJob, dir: string, s3: S3Client, opts: { log: (line: string) => void }): Promise<void> {
  for (const sub of ['input/config', 'input/data', 'model', 'output', 'checkpoints']) await mkdir(join(dir, sub), { recursive: true });
  const channels = job.InputDataConfig ?? [];
  await writeFile(join(dir, 'input', 'config', 'hyperparameters.json'), '{}');
  await writeFile(join(dir, 'input', 'config', 'resourceconfig.json'), JSON.stringify({ current_host: 'algo-1', hosts: ['algo-1'] }));
  await writeFile(
    join(dir, 'input', 'config', 'inputdataconfig.json'),
    JSON.stringify(Object.fromEntries(channels.map((c) => [c.ChannelName, { TrainingInputMode: 'File', S3DistributionType: 'FullyReplicated' }]))),
  );
  for (const channel of channels) {
    const count = await downloadPrefix(s3, channel.DataSource.S3DataSource.S3Uri, join(dir, 'input', 'data', channel.ChannelName)).catch((e: Error) => {
      // The job's role could not read its data: SageMaker fails the job, it does not refuse the create.
      throw new TrainingJobFailed({ TrainingJobName: job.TrainingJobName, TrainingJobStatus: 'Failed', FailureReason: `ClientError: Data download failed: ${e.message}` });
    });
    // SageMaker refuses a channel whose prefix holds no object.
    if (count === 0) throw new TrainingJobFailed({ TrainingJobName: job.TrainingJobName, TrainingJobStatus: 'Failed', FailureReason: `ClientError: no S3 objects found under ${channel.DataSource.S3DataSource.S3Uri}` });
  }
  // A job starts with what its checkpoint prefix holds (a resumed spot job, a retried one).
  if (job.CheckpointConfig) {
    const restored = await downloadPrefix(s3, withSlash(job.CheckpointConfig.S3Uri), join(dir, 'checkpoints'));
    if (restored) opts.log(`job ${job.TrainingJobName}: restored ${restored} checkpoint file(s)`);
  }
}

/** Every object under the prefix into `folder`, by relative key; answers how many. */
async function downloadPrefix(s3: S3Client, uri: string, folder: string): Promise<number> {
  const { bucket, key: prefix } = s3Parts(uri);
  let token: string | undefined;
  let count = 0;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const object of page.Contents ?? []) {
      const target = join(folder, object.Key!.slice(prefix.length).replace(/^\/+/, ''));
      await mkdir(dirname(target), { recursive: true });
      const body = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: object.Key! }));
      await pipeline(body.Body as Readable, createWriteStream(target));
      count++;
    }
    token = page.NextContinuationToken;
  } while (token);
  return count;
}

export const withSlash = (uri: string) => (uri.endsWith('/') ? uri : `${uri}/`);

/** Every file under `folder` to `<uri><relative path>`. */
export async function uploadFolder(folder: string, uri: string, s3: S3Client): Promise<void> {
  const { bucket, key: prefix } = s3Parts(uri);
  for (const file of await walk(folder)) {
    const upload = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: `${prefix}${relative(folder, file)}`, Body: createReadStream(file) },
      partSize: 16 * 1024 * 1024,
      queueSize: 4,
    });
    await upload.done();
  }
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}
