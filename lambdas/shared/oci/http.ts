/** One HTTP exchange on node's http/https, with an inactivity timeout and streamed bodies. */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { LookupFunction } from '../egress.ts';

export interface Exchange {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  /** Socket inactivity limit: a 1 GiB upload may take long, but never stalls this long. */
  timeoutMs: number;
  /** Resolves host names; the egress guard's lookup refuses private addresses at connect time. */
  lookup?: LookupFunction;
}

export function send(x: Exchange): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const client = x.url.protocol === 'https:' ? https : http;
    const headers: Record<string, string | number> = { 'user-agent': 'dreambooth-api', ...x.headers };
    if (Buffer.isBuffer(x.body)) headers['content-length'] = x.body.length;
    else if (!x.body && !['GET', 'HEAD', 'DELETE'].includes(x.method)) headers['content-length'] = 0;
    const req = client.request(x.url, { method: x.method, headers, ...(x.lookup ? { lookup: x.lookup } : {}) });
    req.setTimeout(x.timeoutMs, () => req.destroy(new Error(`no data for ${x.timeoutMs} ms`)));
    req.once('error', reject);
    req.once('response', resolve);
    if (x.body instanceof Readable) pipeline(x.body, req).catch((e) => req.destroy(e));
    else req.end(x.body);
  });
}

/** Reads a response body into memory, refusing more than `max` bytes. */
export async function readBody(res: IncomingMessage, max = 4 * 1024 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of res) {
    total += (chunk as Buffer).length;
    if (total > max) {
      res.destroy();
      throw new Error(`response larger than ${max} bytes`);
    }
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

export const discard = (res: IncomingMessage) => res.resume();

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Full jitter: a random wait up to an exponentially growing cap. */
export const backoff = (attempt: number, baseMs = 200, maxMs = 3000) =>
  sleep(Math.random() * Math.min(maxMs, baseMs * 2 ** attempt));
