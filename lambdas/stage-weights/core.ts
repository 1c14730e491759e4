/**
 * "Stage the weights in S3": stream the trainer's output.zip into S3 as a multipart upload
 * (constant memory, nothing in /tmp), then check the archive from its central directory with
 * a few ranged reads. Idempotent: a retry finds the staged object and only checks it again.
 */
import { CopyObjectCommand, GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Transform, type Readable } from 'node:stream';
import { ArchiveError, inspectArchive, missingComponents, readEntry, s3Source } from '#shared/archive';
import type { Config } from '#shared/config';
import type { Deps as AllDeps } from '#shared/deps';
import { mustGet } from '#shared/runs';
import { redactUrl, requestStream } from '#shared/http';
import { StepError, StepErrors, type StageWeightsResult } from '#shared/steps';
import { downloadHeaders } from '#shared/trainers/index';
import type { TrainingRecord } from '#shared/training';

type Deps = AllDeps<'s3' | 'secrets'>;

export interface StageEnv {
  /** ECR: `<account>.dkr.ecr.<region>.amazonaws.com`. */
  registryHost: string;
  /** Relayed archives above this size stream through the function. @default CopyObject's 5 GiB limit */
  copyMaxBytes?: number;
}

export async function stageWeights(d: Deps, env: StageEnv, trainingId: string, outputUrl: string): Promise<StageWeightsResult> {
  const t = await mustGet(d, trainingId);
  if (t.cancel_requested || t.status === 'canceled') throw new StepError(StepErrors.TrainingCanceled, 'the training was canceled');
  await d.store.updateTraining(t.id, { status: 'pushing' }, { status: ['starting', 'processing', 'pushing'] });

  // A re-template reuses the archive its source training staged (while the bucket keeps it).
  const key = t.staged?.key ?? `staged/${t.id}/output.zip`;
  const size =
    (await stagedSize(d, key)) ??
    (outputUrl.startsWith('s3:') ? await copyRelayed(d, t, outputUrl, key, env.copyMaxBytes) : await download(d, t, outputUrl, key));
  try {
    const source = s3Source(d.s3, d.bucket, key, size);
    const summary = await inspectArchive(source, {
      maxBytes: d.config.limits.archive_max_bytes,
      maxEntries: d.config.limits.archive_max_entries,
      maxUncompressedBytes: d.config.limits.archive_max_uncompressed_bytes,
      maxRatio: d.config.limits.archive_max_ratio,
    });
    await checkPipeline(source, summary.topDirs);
    await d.store.updateTraining(t.id, { staged: { bucket: d.bucket, key, size } });
    return { bucket: d.bucket, key, size, entries: summary.entries, build_env: buildEnv(d.config, env, t, d.bucket, key) };
  } catch (e) {
    if (e instanceof ArchiveError) throw new StepError(StepErrors.BadArchive, `the trainer's output archive is not usable: ${e.message}`);
    throw e;
  }
}

/** A diffusers pipeline needs the component folders its model_index.json names. */
async function checkPipeline(source: ReturnType<typeof s3Source>, topDirs: string[]): Promise<void> {
  const raw = await readEntry(source, 'model_index.json', 1024 * 1024);
  let index: unknown;
  try {
    index = JSON.parse(raw?.toString('utf8') ?? '');
  } catch {
    throw new ArchiveError('model_index.json is not valid JSON');
  }
  const missing = missingComponents(index, topDirs);
  if (missing.length > 0) {
    throw new ArchiveError(`model_index.json names ${missing.join(', ')} but the archive has no ${missing.map((m) => `${m}/`).join(', ')} folder`);
  }
}

async function stagedSize(d: Deps, key: string): Promise<number | null> {
  try {
    const head = await d.s3.send(new HeadObjectCommand({ Bucket: d.bucket, Key: key }));
    return head.ContentLength ?? null;
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

const isNotFound = (e: unknown) =>
  (e as Error).name === 'NotFound' || (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404;

const COPY_MAX_BYTES = 5 * 1024 ** 3;

/**
 * An archive the Cog upload relay put in our bucket (`s3://<bucket>/trainer-outputs/<trainer>/…`),
 * copied server-side. Only this trainer's uploads for this run are accepted, never another
 * bucket or prefix: the URL comes from the trainer.
 */
async function copyRelayed(d: Deps, t: TrainingRecord, url: string, key: string, copyMax = COPY_MAX_BYTES): Promise<number> {
  const m = url.match(/^s3:\/\/([^/]+)\/(trainer-outputs\/([^/]+)\/[0-9a-f]{32}\/[A-Za-z0-9._-]+)$/);
  if (!m || m[1] !== d.bucket || m[3] !== t.trainer) {
    throw new StepError(StepErrors.TrainerFailed, `the trainer's output ${redactUrl(url)} is not an upload of this trainer in the service's bucket`);
  }
  const source = m[2]!;
  let head;
  try {
    head = await d.s3.send(new HeadObjectCommand({ Bucket: d.bucket, Key: source }));
  } catch (e) {
    if (!isNotFound(e)) throw e;
    throw new StepError(StepErrors.TrainerFailed, `the trainer's output ${redactUrl(url)} does not exist (uploads expire after a day)`);
  }
  if (head.Metadata?.['prediction-id'] !== t.run.id) {
    throw new StepError(StepErrors.TrainerFailed, `the trainer's output ${redactUrl(url)} was uploaded for another prediction`);
  }
  const size = head.ContentLength ?? 0;
  const max = d.config.limits.archive_max_bytes;
  if (size > max) throw new StepError(StepErrors.BadArchive, `the trainer's output is ${size} bytes; limits.archive_max_bytes is ${max}`);
  if (size <= copyMax) {
    await d.s3.send(new CopyObjectCommand({ Bucket: d.bucket, Key: key, CopySource: `${d.bucket}/${source}`, ContentType: 'application/zip', MetadataDirective: 'REPLACE' }));
    return size;
  }
  const out = await d.s3.send(new GetObjectCommand({ Bucket: d.bucket, Key: source }));
  return store(d, out.Body as Readable, key, size);
}

async function download(d: Deps, t: TrainingRecord, url: string, key: string): Promise<number> {
  const max = d.config.limits.archive_max_bytes;
  // The trainer's own file URLs may need its credentials (Replicate's on api.replicate.com do);
  // without them (an unreadable token) the download still runs and fails with the origin's answer.
  const headers = await downloadHeaders(d.config, t.trainer, d, url).catch(() => undefined);
  let res;
  try {
    res = await requestStream(url, { method: 'GET', headers, timeoutMs: 60_000, allow: d.config.egress.allow, maxRedirects: 3 });
  } catch (e) {
    const err = e as Error & { code?: string };
    const name = err.code === 'EGRESS_REFUSED' ? StepErrors.TrainerFailed : StepErrors.Transient;
    throw new StepError(name, `could not download the trainer's output ${redactUrl(url)}: ${err.message}`);
  }
  if (res.status !== 200) {
    res.stream.resume();
    const name = res.status >= 500 || res.status === 429 ? StepErrors.Transient : StepErrors.TrainerFailed;
    throw new StepError(name, `the trainer's output ${redactUrl(url)} answered HTTP ${res.status}`);
  }
  const declared = Number(res.headers['content-length'] ?? NaN);
  if (declared > max) {
    res.stream.destroy();
    throw new StepError(StepErrors.BadArchive, `the trainer's output is ${declared} bytes; limits.archive_max_bytes is ${max}`);
  }
  return store(d, res.stream as Readable, key, declared);
}

/** Streams into S3 (multipart, constant memory) and returns the bytes that really arrived. */
async function store(d: Deps, stream: Readable, key: string, declared: number): Promise<number> {
  const max = d.config.limits.archive_max_bytes;
  let counted = 0;
  // Count the bytes that really arrive: headers can lie, and a cut connection must not pass.
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      counted += chunk.length;
      if (counted > max) return done(new StepError(StepErrors.BadArchive, `the trainer's output exceeds limits.archive_max_bytes (${max})`));
      done(null, chunk);
    },
  });
  const body = stream.pipe(counter);
  stream.on('error', (e) => counter.destroy(e));
  const upload = new Upload({
    client: d.s3,
    params: { Bucket: d.bucket, Key: key, Body: body, ContentType: 'application/zip' },
    partSize: 16 * 1024 * 1024,
    queueSize: 4,
    leavePartsOnError: false,
  });
  try {
    await upload.done();
  } catch (e) {
    if (e instanceof StepError) throw e;
    throw new StepError(StepErrors.Transient, `staging the trainer's output failed: ${(e as Error).message}`);
  }
  if (Number.isFinite(declared) && counted !== declared) {
    throw new StepError(StepErrors.Transient, `the trainer's output was cut short (${counted} of ${declared} bytes)`);
  }
  return counted;
}

/** Where the model's image goes: `<registry>/<prefix>/<owner>/<name>`. */
export function imageRepository(config: Config, env: StageEnv, model: string): string {
  const r = config.registry;
  if (r.type === 'ecr') return `${env.registryHost}/${r.repository_prefix}/${model}`;
  if (r.type === 'layout') return `oci:${r.dir}/${model}`;
  return `${r.host}/${model}`;
}

function buildEnv(config: Config, env: StageEnv, t: TrainingRecord, bucket: string, key: string): StageWeightsResult['build_env'] {
  return {
    TRAINING_ID: t.id,
    WEIGHTS_S3_URI: `s3://${bucket}/${key}`,
    TEMPLATE_IMAGE: `${t.template.repository}@sha256:${t.template.digest}`,
    IMAGE_REPOSITORY: imageRepository(config, env, t.model),
    IMAGE_TAG: t.id,
    NOTES: t.notes ?? '',
  };
}
