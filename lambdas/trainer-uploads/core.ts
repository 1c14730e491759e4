/**
 * The API side of the Cog upload relay (relay/). Cog PUTs each output file to
 * `<upload-url><filename>`, which one presigned S3 URL cannot serve, so the relay streams it into
 * a multipart upload whose parts go straight to S3 through short-lived presigned URLs handed out
 * here. Every route is authorised by the trainer's own upload token, never by an API token.
 *
 * The location of a finished upload is `s3://<bucket>/<key>`: it carries no credential, and
 * stage-weights copies it server-side (API Gateway could not serve a 2 GB archive itself).
 */
import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import * as z from '#shared/zod';
import type { BaseDeps, Clients } from '#shared/deps';
import { zodDetail } from '#shared/errors';
import { safeEqual } from '#shared/ids';
import { getSecretKey } from '#shared/secrets';

/** No table: an upload's state is S3's own multipart upload. */
export type UploadDeps = Pick<BaseDeps, 'config' | 'bucket'> & Pick<Clients, 's3' | 'secrets'>;
type Deps = UploadDeps;

/** Key prefix of relayed uploads; stage-weights accepts `s3://` locations under it only. */
export const TRAINER_OUTPUTS = 'trainer-outputs/';
/** A part URL only needs to live while one part is sent; the relay asks again on a retry. */
export const PART_URL_SECONDS = 300;
const MAX_PARTS = 10_000;

export type UploadRoute =
  | { action: 'create'; trainer: string }
  | { action: 'part'; trainer: string; uploadId: string; part: string }
  | { action: 'complete' | 'abort'; trainer: string; uploadId: string };

export interface UploadResult {
  status: number;
  body: Record<string, unknown>;
}

const CreateBody = z.strictObject({
  filename: z.string().check(z.minLength(1), z.maxLength(255)),
  prediction_id: z.string().check(z.regex(/^[A-Za-z0-9._-]{1,128}$/, 'must be a Cog prediction id')),
  content_type: z._default(
    z.string().check(z.maxLength(200), z.regex(/^[\w.+-]+\/[\w.+-]+(\s*;.*)?$/, 'must be a media type')),
    'application/octet-stream',
  ),
});

const Part = z.strictObject({
  n: z.number().check(z.int(), z.gte(1), z.lte(MAX_PARTS)),
  etag: z.string().check(z.minLength(1), z.maxLength(200)),
});
const CompleteBody = z.strictObject({
  parts: z.array(Part).check(
    z.minLength(1),
    z.maxLength(MAX_PARTS),
    z.refine((ps) => new Set(ps.map((p) => p.n)).size === ps.length, 'part numbers must be unique'),
  ),
});

/** The id handed to the relay names the object and S3's upload; S3 refuses a pair that does not match. */
const UploadRef = z.strictObject({ k: z.string(), u: z.string().check(z.minLength(1), z.maxLength(1024)) });

/**
 * Presigned parts need a client that adds no checksum: by default the SDK bakes the CRC32 of an
 * empty body into the URL and S3 then refuses every real part.
 */
export const presignClient = () => new S3Client({ forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED' });
let shared: S3Client | undefined;
const presigner = () => (shared ??= presignClient());

export async function trainerUpload(
  d: Deps,
  route: UploadRoute,
  authorization: string | undefined,
  body: string,
  sign: S3Client = presigner(),
): Promise<UploadResult> {
  if (!(await authorised(d, route.trainer, authorization))) {
    return { status: 401, body: { detail: 'upload token is missing or wrong' } };
  }
  if (route.action === 'create') return create(d, route.trainer, body);
  const ref = decodeRef(route.trainer, route.uploadId);
  if (!ref) return { status: 404, body: { detail: 'no such upload' } };
  try {
    if (route.action === 'part') return await partUrl(d, sign, ref, route.part);
    if (route.action === 'complete') return await complete(d, ref, body);
    await d.s3.send(new AbortMultipartUploadCommand({ Bucket: d.bucket, Key: ref.k, UploadId: ref.u }));
    return { status: 200, body: { detail: 'aborted' } };
  } catch (e) {
    const name = (e as Error).name;
    if (name === 'NoSuchUpload') return { status: 404, body: { detail: 'no such upload (completed, aborted or expired)' } };
    if (name === 'InvalidPart' || name === 'InvalidPartOrder' || name === 'EntityTooSmall') {
      return { status: 400, body: { detail: `S3 refused the parts: ${name}` } };
    }
    throw e;
  }
}

/** Only a configured Cog trainer with an upload token secret, and that token, in constant time. */
async function authorised(d: Deps, trainer: string, authorization: string | undefined): Promise<boolean> {
  const t = Object.hasOwn(d.config.trainers, trainer) ? d.config.trainers[trainer] : undefined;
  if (t?.backend !== 'cog' || !t.upload_token_secret) return false;
  const given = (authorization ?? '').replace(/^Bearer\s+/i, '');
  const expected = await getSecretKey(d.secrets, t.upload_token_secret);
  return given.length > 0 && safeEqual(given, expected);
}

async function create(d: Deps, trainer: string, body: string): Promise<UploadResult> {
  const parsed = CreateBody.safeParse(parseJson(body));
  if (!parsed.success) return { status: 400, body: { detail: zodDetail(parsed.error) } };
  const { filename, prediction_id, content_type } = parsed.data;
  const key = `${TRAINER_OUTPUTS}${trainer}/${randomBytes(16).toString('hex')}/${safeFilename(filename)}`;
  const out = await d.s3.send(
    new CreateMultipartUploadCommand({
      Bucket: d.bucket,
      Key: key,
      ContentType: content_type,
      // stage-weights takes the object only for this prediction.
      Metadata: { 'prediction-id': prediction_id },
    }),
  );
  const uploadId = Buffer.from(JSON.stringify({ k: key, u: out.UploadId })).toString('base64url');
  return { status: 201, body: { upload_id: uploadId, key } };
}

async function partUrl(d: Deps, sign: S3Client, ref: Ref, part: string): Promise<UploadResult> {
  const n = Number(part);
  if (!/^\d{1,5}$/.test(part) || n < 1 || n > MAX_PARTS) {
    return { status: 400, body: { detail: `part number must be 1 to ${MAX_PARTS}` } };
  }
  // Loaded on first use: most invocations of this Lambda are trainer callbacks, which never presign.
  const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');
  const url = await getSignedUrl(sign, new UploadPartCommand({ Bucket: d.bucket, Key: ref.k, UploadId: ref.u, PartNumber: n }), {
    expiresIn: PART_URL_SECONDS,
  });
  return { status: 200, body: { url } };
}

async function complete(d: Deps, ref: Ref, body: string): Promise<UploadResult> {
  const parsed = CompleteBody.safeParse(parseJson(body));
  if (!parsed.success) return { status: 400, body: { detail: zodDetail(parsed.error) } };
  const parts = [...parsed.data.parts].sort((a, b) => a.n - b.n).map((p) => ({ PartNumber: p.n, ETag: p.etag }));
  await d.s3.send(
    new CompleteMultipartUploadCommand({ Bucket: d.bucket, Key: ref.k, UploadId: ref.u, MultipartUpload: { Parts: parts } }),
  );
  return { status: 200, body: { location: `s3://${d.bucket}/${ref.k}` } };
}

type Ref = z.infer<typeof UploadRef>;

function decodeRef(trainer: string, uploadId: string): Ref | null {
  try {
    const ref = UploadRef.parse(JSON.parse(Buffer.from(uploadId, 'base64url').toString('utf8')));
    // A trainer's token reaches that trainer's uploads only.
    const own = new RegExp(`^${TRAINER_OUTPUTS}${escapeRegExp(trainer)}/[0-9a-f]{32}/[A-Za-z0-9._-]+$`);
    return own.test(ref.k) ? ref : null;
  } catch {
    return null;
  }
}

/** One path segment of harmless characters, never `.` or `..`. */
export function safeFilename(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, '_').slice(-200);
  return /^\.+$/.test(safe) ? `_${safe}` : safe;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body || '{}');
  } catch {
    return undefined;
  }
}
