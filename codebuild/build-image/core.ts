/**
 * The `append` build, as CodeBuild runs it (buildspecs/append-model.yml → main.ts): the image
 * `FROM <template>@<digest>` + `COPY weights /src/weights` + the two labels of the docker
 * build, made with registry calls only. The staged output is read from S3 by ranges and streamed
 * straight into one new layer; nothing is written to disk, so it fits CodeBuild Lambda compute.
 */
import { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { s3Source, type RandomAccessSource } from '#shared/archive';
import { appendLayer } from '#shared/oci/append';
import { pushServingVariant } from '#shared/oci/serving-variant';
import { tarFromFile, tarFromTar, tarFromZip, type ZipLimits } from '#shared/oci/tar';
import type { BuildImageEnv } from '#shared/build-env';
import type { WeightsFormat } from '#shared/weights-format';
import type { ImageStore } from '#shared/oci/types';
import { readAhead } from './read-ahead.ts';

export interface BuildImageDeps {
  s3: S3Client;
  /** The store holding `repository` (`host/path`) and the path inside it. */
  storeFor(repository: string): { store: ImageStore; repo: string };
  log(line: string): void;
  /** serving/sagemaker_adapter.py's bytes: the build's script finds them beside itself. */
  servingAdapter: Buffer;
  /** Waits between tries while a registry cannot be reached. @default REGISTRY_RETRY_MS */
  retryDelaysMs?: number[];
}

/** About a minute and a half of trying before a build gives up on an unreachable registry. */
export const REGISTRY_RETRY_MS = [2_000, 8_000, 30_000, 60_000];

/**
 * Retries the whole append while a registry is unreachable or answers 5xx/429. Safe: blobs are
 * content-addressed and the config's creation time is fixed, so a retry pushes the very same
 * manifest (one version, never a second image).
 */
async function whileRegistryDown<T>(log: (l: string) => void, delays: number[], attempt: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (e) {
      if (i >= delays.length || !registryDown(e)) throw e;
      log(`registry unavailable (${(e as Error).message}); retrying in ${delays[i]! / 1000} s`);
      await new Promise((r) => setTimeout(r, delays[i]));
    }
  }
}

function registryDown(e: unknown): boolean {
  const err = e as { code?: string; status?: number; name?: string };
  // Status 0: the registry client could not reach the registry at all.
  if (err.name === 'RegistryError') return err.status === 0 || err.status === 429 || (err.status ?? 0) >= 500;
  return ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE'].includes(err.code ?? '');
}

/**
 * What the buildspec exports (lambdas/shared/build-env.ts BUILD_EXPORTS): the manifest digest
 * (the model version), a pullable reference, and the version's SageMaker variant.
 */
export interface BuildImageResult {
  IMAGE_DIGEST: string;
  IMAGE_URI: string;
  IMAGE_SERVING_URI: string;
}

/** The labels the docker build sets (`--label`), so both strategies make the same image. */
export const imageLabels = (notes: string, trainingId: string) => ({
  'org.opencontainers.image.description': notes,
  'ai.dreambooth.training-id': trainingId,
});

/** The notes, exactly as stage-weights wrote them. */
export async function readNotes(s3: S3Client, uri: string): Promise<string> {
  if (!uri) return '';
  const [, Bucket, Key] = uri.match(/^s3:\/\/([^/]+)\/(.+)$/)!;
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket, Key }));
    return await out.Body!.transformToString('utf8');
  } catch (e) {
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    throw new Error(`cannot read the notes ${uri}: ${(e as Error).name} (HTTP ${status ?? '?'})`);
  }
}

/**
 * The one new layer: the output's entries under src/weights/, counted as they flow. A zip is
 * read by ranges from its central directory; a tar and a single file are read front to back.
 */
export function weightsLayer(source: RandomAccessSource, limits: ZipLimits, format: WeightsFormat = 'zip', name = 'weights'): Readable {
  if (format === 'zip') return tarFromZip(source, undefined, limits);
  if (format === 'file') return tarFromFile(name, source.size, () => sequential(source));
  return tarFromTar(sequential(source), format === 'tar.gz', undefined, limits);
}

const CHUNK = 8 * 1024 * 1024;

/** A source front to back: streamed when it can be, else in 8 MiB ranges (read ahead). */
function sequential(source: RandomAccessSource): Readable {
  if (source.stream) return source.stream(0, source.size);
  return Readable.from(
    (async function* () {
      for (let at = 0; at < source.size; at += CHUNK) yield await source.read(at, Math.min(CHUNK, source.size - at));
    })(),
    { objectMode: false },
  );
}

export async function buildImage(env: BuildImageEnv, d: BuildImageDeps): Promise<BuildImageResult> {
  const [, bucket, key] = env.WEIGHTS_S3_URI.match(/^s3:\/\/([^/]+)\/(.+)$/)!;
  const at = env.TEMPLATE_IMAGE.lastIndexOf('@');
  const source = d.storeFor(env.TEMPLATE_IMAGE.slice(0, at));
  const target = d.storeFor(env.IMAGE_REPOSITORY);
  const [size, notes] = await Promise.all([stagedSize(d.s3, bucket!, key!, env.WEIGHTS_S3_URI), readNotes(d.s3, env.NOTES_S3_URI)]);
  const started = Date.now();
  const out = await whileRegistryDown(d.log, d.retryDelaysMs ?? REGISTRY_RETRY_MS, () => appendLayer({
    source: source.store,
    sourceRepo: source.repo,
    sourceRef: env.TEMPLATE_IMAGE.slice(at + 1),
    target: target.store,
    targetRepo: target.repo,
    tag: env.IMAGE_TAG,
    layer: () =>
      weightsLayer(
        readAhead(s3Source(d.s3, bucket!, key!, size)),
        { maxEntries: env.ARCHIVE_MAX_ENTRIES, maxBytes: env.ARCHIVE_MAX_UNCOMPRESSED_BYTES },
        env.WEIGHTS_FORMAT,
        key!.split('/').pop(),
      ),
    labels: imageLabels(notes, env.TRAINING_ID),
    // Fixed, as reproducible builds do: a retried build yields the same version.
    created: new Date(0),
  }));
  const seconds = (Date.now() - started) / 1000;
  d.log(`pushed ${out.image}: weights layer of ${out.bytes} bytes in ${seconds.toFixed(1)} s`);
  const serving = await whileRegistryDown(d.log, d.retryDelaysMs ?? REGISTRY_RETRY_MS, () =>
    pushServingVariant(target.store, target.repo, out.manifestDigest, d.servingAdapter),
  );
  d.log(`pushed ${serving.image}: the SageMaker variant`);
  return { IMAGE_DIGEST: out.digest, IMAGE_URI: out.image, IMAGE_SERVING_URI: serving.image };
}

async function stagedSize(s3: S3Client, bucket: string, key: string, uri: string): Promise<number> {
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return head.ContentLength ?? 0;
  } catch (e) {
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    const why = status === 404 ? 'it does not exist' : `${(e as Error).name} (HTTP ${status ?? '?'})`;
    throw new Error(`cannot read the staged archive ${uri}: ${why}`);
  }
}
