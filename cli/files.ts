/**
 * Files in and out of a prediction: a local file sent as a data URI (as Replicate's client sends
 * a file input), and the file outputs (URLs, or data URIs) written to a folder.
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';

const MIME: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.svg': 'image/svg+xml',
  '.wav': 'audio/wav',
  '.mp3': 'audio/mpeg',
  '.mp4': 'video/mp4',
  '.txt': 'text/plain',
  '.json': 'application/json',
  '.zip': 'application/zip',
  '.tar': 'application/x-tar',
};
const EXTENSION: Record<string, string> = Object.fromEntries(Object.entries(MIME).map(([ext, type]) => [type, ext]).reverse());

/** A file as `data:<type>;base64,…`. */
export async function dataUri(path: string): Promise<string> {
  const type = MIME[extname(path).toLowerCase()] ?? 'application/octet-stream';
  return `data:${type};base64,${(await readFile(path)).toString('base64')}`;
}

const FILE_URL = /^(https?:\/\/|data:)/;

/** Every file of an output, in order: the strings in it that are URLs or data URIs. */
export function fileUrls(output: unknown): string[] {
  if (typeof output === 'string') return FILE_URL.test(output) ? [output] : [];
  if (Array.isArray(output)) return output.flatMap(fileUrls);
  if (output && typeof output === 'object') return Object.values(output).flatMap(fileUrls);
  return [];
}

export interface SaveOptions {
  /** Headers for a URL (the API's token for the API's own URLs, none for presigned ones). */
  headersFor?: (url: string) => Record<string, string>;
  /** A name for a file whose URL names none (a data URI): `<stem>-<n><ext>`. @default 'output' */
  stem?: string;
  timeoutMs?: number;
}

/** Downloads each file into `dir`, never over an existing file; answers the paths, in order. */
export async function saveFiles(urls: string[], dir: string, o: SaveOptions = {}): Promise<string[]> {
  const paths: string[] = [];
  // `-o pictures/` names a folder that need not exist yet.
  if (urls.length) await mkdir(dir, { recursive: true });
  for (const [i, url] of urls.entries()) {
    const { body, type } = await download(url, o);
    paths.push(await writeNew(dir, fileName(url, type, `${o.stem ?? 'output'}-${i}`), body));
  }
  return paths;
}

async function download(url: string, o: SaveOptions): Promise<{ body: Buffer; type: string }> {
  if (url.startsWith('data:')) {
    const m = url.match(/^data:([^;,]*)(;base64)?,(.*)$/s);
    if (!m) throw new Error(`an output is a data URI that cannot be read (${url.slice(0, 40)}…)`);
    return { body: m[2] ? Buffer.from(m[3]!, 'base64') : Buffer.from(decodeURIComponent(m[3]!)), type: m[1]! };
  }
  const res = await fetch(url, { headers: o.headersFor?.(url) ?? {}, signal: AbortSignal.timeout(o.timeoutMs ?? 120_000) });
  // A presigned URL's query string is a credential: never printed.
  if (!res.ok) throw new Error(`downloading ${url.split('?')[0]} answered HTTP ${res.status}`);
  return { body: Buffer.from(await res.arrayBuffer()), type: (res.headers.get('content-type') ?? '').split(';')[0]!.trim() };
}

/** The URL's own file name when it has one with an extension, else `fallback` plus the type's extension. */
function fileName(url: string, type: string, fallback: string): string {
  if (!url.startsWith('data:')) {
    const last = decodeURIComponent(basename(new URL(url).pathname));
    const safe = last.replace(/[^\w.-]+/g, '_').replace(/^\.+/, '');
    if (safe && extname(safe)) return safe;
  }
  return `${fallback}${EXTENSION[type] ?? ''}`;
}

/** `name`, or `name-1`, `name-2`… beside an existing file: created exclusively, so nothing is overwritten. */
async function writeNew(dir: string, name: string, body: Buffer): Promise<string> {
  const ext = extname(name);
  const stem = name.slice(0, name.length - ext.length);
  for (let n = 0; ; n++) {
    const path = join(dir, n ? `${stem}-${n}${ext}` : name);
    try {
      const file = await open(path, 'wx');
      try {
        await file.writeFile(body);
      } finally {
        await file.close();
      }
      return path;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}
