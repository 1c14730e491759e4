/** Tar fixtures (plain or gzip), including unsafe ones: tar-stream writes any name and type it is given. */
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';

export interface TarItem {
  name: string;
  data?: Buffer | string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  linkname?: string;
}

export async function tarball(items: TarItem[], opts: { gzip?: boolean } = {}): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const item of items) {
    const type = item.type ?? 'file';
    const body = type === 'file' ? Buffer.from(item.data ?? `content of ${item.name}`) : undefined;
    await new Promise<void>((resolve, reject) => {
      pack.entry({ name: item.name, type, linkname: item.linkname, size: body?.length ?? 0, mode: type === 'directory' ? 0o755 : 0o644 }, body ?? Buffer.alloc(0), (e) => (e ? reject(e) : resolve()));
    });
  }
  pack.finalize();
  await done;
  const raw = Buffer.concat(chunks);
  return opts.gzip ? gzipSync(raw) : raw;
}
