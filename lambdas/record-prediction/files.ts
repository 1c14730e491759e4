/**
 * File outputs: Cog answers a synchronous prediction's files as `data:` URIs; each becomes an S3
 * object under the prediction's prefix and a FileRef in the output, never inline in the record.
 */
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { type FileRef, fileKey } from '#shared/predictions/record';

const DATA_URI = /^data:([^;,]*)((?:;[^;,]*)*),(.*)$/s;

const EXTENSIONS: Record<string, string> = {
  'image/png': '.png',
  'image/jpeg': '.jpg',
  'image/webp': '.webp',
  'image/gif': '.gif',
  'image/svg+xml': '.svg',
  'audio/wav': '.wav',
  'audio/x-wav': '.wav',
  'audio/mpeg': '.mp3',
  'video/mp4': '.mp4',
  'text/plain': '.txt',
  'application/json': '.json',
  'application/zip': '.zip',
  'application/x-tar': '.tar',
};

export const extensionOf = (mime: string) => EXTENSIONS[mime.toLowerCase()] ?? '.bin';

export interface DataUri {
  mime: string;
  body: Buffer;
}

export function parseDataUri(s: string): DataUri | null {
  const m = DATA_URI.exec(s);
  if (!m) return null;
  const mime = m[1] || 'text/plain';
  const base64 = m[2]!.split(';').includes('base64');
  return { mime, body: base64 ? Buffer.from(m[3]!, 'base64') : Buffer.from(decodeURIComponent(m[3]!), 'utf8') };
}

/** The output with each data URI (alone, in lists, in objects) stored and replaced by its FileRef. */
export async function storeFiles(s3: S3Client, bucket: string, predictionId: string, output: unknown): Promise<unknown> {
  let n = 0;
  const walk = async (v: unknown): Promise<unknown> => {
    if (typeof v === 'string') {
      const file = v.startsWith('data:') ? parseDataUri(v) : null;
      if (!file) return v;
      const key = fileKey(predictionId, n++, extensionOf(file.mime));
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: file.body, ContentType: file.mime }));
      return { $file: key } satisfies FileRef;
    }
    if (Array.isArray(v)) {
      const out: unknown[] = [];
      for (const item of v) out.push(await walk(item));
      return out;
    }
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) out[k] = await walk(item);
      return out;
    }
    return v;
  };
  return walk(output);
}
