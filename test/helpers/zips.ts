/** Zip fixtures for tests, including the unsafe ones no zip library will write. */
import yazl from 'yazl';

export interface Item {
  name: string;
  data?: Buffer | string;
  dir?: boolean;
  mode?: number;
  compress?: boolean;
}

/**
 * yazl refuses unsafe names, so unsafe fixtures are written under a same-length placeholder
 * that is then patched into the real name in both the local and the central header.
 */
export async function zip(items: Item[]): Promise<Buffer> {
  const z = new yazl.ZipFile();
  const patches: [Buffer, Buffer][] = [];
  items.forEach((item, i) => {
    const placeholder = `${String.fromCharCode(65 + i).repeat(2)}${'q'.repeat(Math.max(0, Buffer.byteLength(item.name) - 2))}`.slice(
      0,
      Buffer.byteLength(item.name),
    );
    const safe = /^\/|\\|(^|\/)\.\.(\/|$)|\0/.test(item.name) ? placeholder : item.name;
    if (safe !== item.name) patches.push([Buffer.from(safe), Buffer.from(item.name)]);
    if (item.dir) z.addEmptyDirectory(safe);
    else z.addBuffer(Buffer.from(item.data ?? `content of ${item.name}`), safe, { mode: item.mode, compress: item.compress ?? true });
  });
  z.end();
  const chunks: Buffer[] = [];
  for await (const c of z.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  const out = Buffer.concat(chunks);
  for (const [from, to] of patches) {
    for (let at = out.indexOf(from); at !== -1; at = out.indexOf(from, at + 1)) to.copy(out, at);
  }
  return out;
}

