/**
 * A strict reader of the PNGs the demo template writes (8-bit RGB, one or more IDAT chunks, no
 * interlacing): checks the signature, every chunk's CRC and the chunk order, inflates the image
 * data and checks each row's length and filter byte. Throws on anything else.
 */
import { crc32, inflateSync } from 'node:zlib';

export interface DecodedPng {
  width: number;
  height: number;
  /** The rows top to bottom, three bytes a pixel. */
  rgb: Buffer;
  chunkTypes: string[];
}

const SIGNATURE = '89504e470d0a1a0a';

export function decodePng(png: Buffer): DecodedPng {
  if (png.subarray(0, 8).toString('hex') !== SIGNATURE) throw new Error('not a PNG signature');
  const chunks: { type: string; data: Buffer }[] = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.subarray(at + 4, at + 8).toString('latin1');
    const data = png.subarray(at + 8, at + 8 + length);
    const crc = png.readUInt32BE(at + 8 + length);
    if (crc !== crc32(png.subarray(at + 4, at + 8 + length)) >>> 0) throw new Error(`bad CRC in ${type}`);
    chunks.push({ type, data });
    at += 12 + length;
  }
  const types = chunks.map((c) => c.type);
  if (types[0] !== 'IHDR' || types.at(-1) !== 'IEND') throw new Error(`chunks out of order: ${types.join(',')}`);
  const ihdr = chunks[0]!.data;
  const width = ihdr.readUInt32BE(0);
  const height = ihdr.readUInt32BE(4);
  if (ihdr.length !== 13 || ihdr[8] !== 8 || ihdr[9] !== 2 || ihdr[10] || ihdr[11] || ihdr[12]) throw new Error('not an 8-bit RGB PNG without interlacing');
  const rows = inflateSync(Buffer.concat(chunks.filter((c) => c.type === 'IDAT').map((c) => c.data)));
  const stride = width * 3;
  if (rows.length !== (stride + 1) * height) throw new Error(`image data of ${rows.length} bytes for ${width}×${height}`);
  const rgb = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    if (rows[y * (stride + 1)] !== 0) throw new Error(`row ${y} uses filter ${rows[y * (stride + 1)]}`);
    rows.copy(rgb, y * stride, y * (stride + 1) + 1, (y + 1) * (stride + 1));
  }
  return { width, height, rgb, chunkTypes: types };
}

/** How many different colours a picture has. */
export function colours(rgb: Buffer): number {
  const seen = new Set<number>();
  for (let i = 0; i < rgb.length; i += 3) seen.add((rgb[i]! << 16) | (rgb[i + 1]! << 8) | rgb[i + 2]!);
  return seen.size;
}

/** The PNG a `data:image/png;base64,` URI carries. */
export function pngOfDataUri(uri: string): Buffer {
  const m = uri.match(/^data:image\/png;base64,([A-Za-z0-9+/=]+)$/);
  if (!m) throw new Error(`not a PNG data URI: ${uri.slice(0, 40)}`);
  return Buffer.from(m[1]!, 'base64');
}
