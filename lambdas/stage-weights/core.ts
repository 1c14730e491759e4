/**
 * "Stage the weights in S3": stream the trainer's output into S3 as a multipart upload
 * (constant memory, nothing in /tmp), then check it: a zip from its central directory with a
 * few ranged reads, a tar by streaming it once (it has no directory), a single file as it is.
 * What the archive must hold beyond safety is the template's say (`weights`: diffusers or any).
 * Idempotent: a retry finds the staged object and only checks it again.
 */
import { isMissingObject } from '#shared/s3-missing';
import { CopyObjectCommand, GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Transform, type Readable } from 'node:stream';
import { ArchiveError, inspectArchive, missingComponents, readEntry, s3Source, type ArchiveLimits } from '#shared/archive';
import type { Deps as AllDeps } from '#shared/deps';
import { mustGet } from '#shared/runs';
import { redactUrl, requestStream } from '#shared/http';
import { StepError, StepErrors, type StageWeightsResult } from '#shared/steps';
import type { OutputInBucket } from '#shared/trainers/backend';
import { backendNamed, downloadHeaders } from '#shared/trainers/index';
import type { TrainingRecord } from '#shared/training';
import { contentTypeFor, inspectTar, outputFileName, sniffFormat, SNIFF_BYTES, type WeightsFormat } from '#shared/weights-format';
import { buildOverrides } from './build-env.ts';
import { restageFromWeights, storeWeightsObject } from './weights-object.ts';

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

  // A re-template reuses the archive its source training staged (while the bucket keeps it). A
  // trainer that leaves its output in the bucket (a SageMaker job) has it staged where it lies.
  const inBucket = backendNamed(t.trainer_backend)?.outputInBucket;
  let key = t.staged?.key ?? (inBucket && outputUrl.startsWith('s3:') ? keyInBucket(inBucket, d, t, outputUrl) : `staged/${t.id}/${outputFileName(outputUrl)}`);
  let size = await stagedSize(d, key);
  if (size === null) {
    // Gone: a weights version's source still has its weights object, restaged under this training.
    const restaged = await restageFromWeights(d, t, key);
    if (restaged) ({ key, size } = restaged);
  }
  size ??= outputUrl.startsWith('s3:') ? await copyOwn(d, t, outputUrl, key, env.copyMaxBytes) : await download(d, t, outputUrl, key);
  try {
    const { format, entries } = await checkOutput(d, t, key, size);
    await d.store.updateTraining(t.id, { staged: { bucket: d.bucket, key, size } });
    const build_env = await buildOverrides(d, t, env.registryHost, key, format);
    if (t.template.weights_input) {
      // No build: the version is the template and this object (the state machine's choice).
      const weights = await storeWeightsObject(d, key, size, env.copyMaxBytes);
      return { bucket: d.bucket, key, size, entries, format, copies_template: false, build_env, kind: 'weights', weights };
    }
    return { bucket: d.bucket, key, size, entries, format, copies_template: await copiesTemplate(d, t, build_env.IMAGE_REPOSITORY), build_env, kind: 'image' };
  } catch (e) {
    if (e instanceof ArchiveError) throw new StepError(StepErrors.BadArchive, `the trainer's output archive is not usable: ${e.message}`);
    throw e;
  }
}

/**
 * Whether the build copies every template layer: not when a version of this model was built from
 * this template already (its repository holds them), nor when the template is in the destination
 * registry and that registry is known to mount layers across repositories (`build.blob_mounting`:
 * ECR without BLOB_MOUNTING answers a mount with an upload, and the build copies them all).
 * The first version from an r8.im template copies them all.
 */
async function copiesTemplate(d: Deps, t: TrainingRecord, destination: string): Promise<boolean> {
  const host = (repository: string) => (repository.startsWith('oci:') ? 'oci:' : repository.split('/')[0]);
  if (d.config.build.blob_mounting && host(t.template.repository) === host(destination)) return false;
  const { results } = await d.store.listVersions(t.model, d.config.limits.page_size);
  return !results.some((v) => v.template.digest === t.template.digest);
}

/** Safety checks always; a diffusers pipeline only when the template loads one. */
async function checkOutput(d: Deps, t: TrainingRecord, key: string, size: number): Promise<{ format: WeightsFormat; entries: number }> {
  const source = s3Source(d.s3, d.bucket, key, size);
  const name = key.split('/').pop()!;
  const format = sniffFormat(await source.read(0, Math.min(SNIFF_BYTES, size)), name);
  const diffusers = (t.template.weights ?? 'diffusers') === 'diffusers';
  const limits: ArchiveLimits = {
    maxBytes: d.config.limits.archive_max_bytes,
    maxEntries: d.config.limits.archive_max_entries,
    maxUncompressedBytes: d.config.limits.archive_max_uncompressed_bytes,
    maxRatio: d.config.limits.archive_max_ratio,
    requiredRootFiles: diffusers ? ['model_index.json'] : [],
  };
  if (format === 'file') {
    if (diffusers) throw new ArchiveError(`it is a single file (${name}), but template ${t.template.name} loads a diffusers pipeline (model_index.json and its component folders); use a template whose weights setting is "any"`);
    return { format, entries: 1 };
  }
  if (format === 'zip') {
    const summary = await inspectArchive(source, limits);
    if (diffusers) await checkPipeline(await readEntry(source, 'model_index.json', 1024 * 1024), summary.topDirs);
    return { format, entries: summary.entries };
  }
  if (size > limits.maxBytes) throw new ArchiveError(`archive is ${size} bytes, more than the limit of ${limits.maxBytes}`);
  const body = (await d.s3.send(new GetObjectCommand({ Bucket: d.bucket, Key: key }))).Body as Readable;
  const summary = await inspectTar(body, format === 'tar.gz', size, limits, ['model_index.json']);
  if (diffusers) await checkPipeline(summary.files.get('model_index.json') ?? null, summary.topDirs);
  return { format, entries: summary.entries };
}

/** A diffusers pipeline needs the component folders its model_index.json names. */
async function checkPipeline(raw: Buffer | null, topDirs: string[]): Promise<void> {
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
    if (isMissing(e)) return null;
    throw e;
  }
}

/**
 * A missing key: 404 when the caller may list the bucket, 403 when it may not (S3 API
 * reference, HeadObject). This role deliberately has no s3:ListBucket: a grant narrowed by an
 * `s3:prefix` condition does not count for HeadObject (its request carries no prefix), and an
 * unconditional one would list every key of the bucket, other trainings' uploads included.
 * A real refusal of GetObject still fails loudly at the archive check that follows.
 */
const isMissing = isMissingObject;

const COPY_MAX_BYTES = 5 * 1024 ** 3;

/** An s3:// output: the Cog upload relay's (one left in the bucket that is missing, said so). */
function copyOwn(d: Deps, t: TrainingRecord, url: string, key: string, copyMax?: number): Promise<number> {
  const inBucket = backendNamed(t.trainer_backend)?.outputInBucket;
  if (inBucket) {
    const why = t.retemplate_of
      ? `the weights of training ${t.retemplate_of} have expired (staged archives are kept retention.staged_archive_days)`
      : inBucket.missing(key);
    throw new StepError(StepErrors.TrainerFailed, why);
  }
  return copyRelayed(d, t, url, key, copyMax);
}

/** The key of an output the trainer left in the bucket: only this training's own. */
function keyInBucket(inBucket: OutputInBucket, d: Deps, t: TrainingRecord, url: string): string {
  const found = inBucket.keyOf(t.id, d.bucket, url);
  if ('refused' in found) throw new StepError(StepErrors.TrainerFailed, found.refused);
  return found.key;
}

/** A server-side copy (CopyObject: up to 5 GiB), streamed through the function beyond that. */
async function copyObject(d: Deps, source: string, key: string, copyMax: number, missing: string, check?: (head: { Metadata?: Record<string, string> }) => void): Promise<number> {
  let head;
  try {
    head = await d.s3.send(new HeadObjectCommand({ Bucket: d.bucket, Key: source }));
  } catch (e) {
    if (!isMissing(e)) throw e;
    throw new StepError(StepErrors.TrainerFailed, missing);
  }
  check?.(head);
  const size = head.ContentLength ?? 0;
  const max = d.config.limits.archive_max_bytes;
  if (size > max) throw new StepError(StepErrors.BadArchive, `the trainer's output is ${size} bytes; limits.archive_max_bytes is ${max}`);
  if (size <= copyMax) {
    await d.s3.send(new CopyObjectCommand({ Bucket: d.bucket, Key: key, CopySource: `${d.bucket}/${source}`, ContentType: contentTypeFor(key), MetadataDirective: 'REPLACE' }));
    return size;
  }
  const out = await d.s3.send(new GetObjectCommand({ Bucket: d.bucket, Key: source }));
  return store(d, out.Body as Readable, key, size);
}

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
  return copyObject(d, m[2]!, key, copyMax, `the trainer's output ${redactUrl(url)} does not exist (uploads expire after a day)`, (head) => {
    if (head.Metadata?.['prediction-id'] !== t.run.id) {
      throw new StepError(StepErrors.TrainerFailed, `the trainer's output ${redactUrl(url)} was uploaded for another prediction`);
    }
  });
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
    params: { Bucket: d.bucket, Key: key, Body: body, ContentType: contentTypeFor(key) },
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
