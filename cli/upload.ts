/**
 * The seed's upload flow: `POST /v1/upload/{filename}` for a presigned PUT and a serving URL,
 * then the archive streamed to the PUT. node:http rather than fetch: a streamed fetch body is
 * sent chunked, and S3 refuses a presigned PUT without a Content-Length.
 */
import http from 'node:http';
import https from 'node:https';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiError, NetworkError, printable, type Client } from './client.ts';
import type { Archive } from './images.ts';

export async function upload(client: Client, archive: Archive, onBytes: (sent: number) => void): Promise<string> {
  const { upload_url, serving_url } = await client.post<{ upload_url: string; serving_url: string }>(
    `/v1/upload/${encodeURIComponent(archive.name)}`,
  );
  await put(upload_url, archive.stream, archive.size, onBytes);
  return serving_url;
}

async function put(url: string, body: Readable, size: number, onBytes: (sent: number) => void): Promise<void> {
  const u = new URL(url);
  const req = (u.protocol === 'https:' ? https : http).request(u, {
    method: 'PUT',
    headers: { 'content-type': 'application/zip', 'content-length': String(size) },
    timeout: 60_000,
  });
  const answered = new Promise<http.IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
    req.on('timeout', () => req.destroy(Object.assign(new Error('no answer in time'), { name: 'TimeoutError' })));
  });
  let sent = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, done) {
      sent += chunk.length;
      onBytes(sent);
      done(null, chunk);
    },
  });
  try {
    const [res] = await Promise.all([answered, pipeline(body, count, req)]);
    const text = await new Promise<string>((resolve) => {
      let t = '';
      res.on('data', (c: Buffer) => (t += c.toString()));
      res.on('end', () => resolve(t));
      res.on('error', () => resolve(t));
    });
    if (res.statusCode! >= 300) {
      const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1];
      throw new ApiError(res.statusCode!, `the upload to ${printable(url)} was refused: HTTP ${res.statusCode}${code ? ` ${code}` : ''}`);
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new NetworkError(printable(url), e);
  }
}
