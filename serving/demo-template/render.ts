/**
 * The demo template's picture: a small PNG determined by the version's weights, the prompt, the
 * seed and the output's index — a two-colour gradient under a few discs, squares and rings whose
 * places, sizes and colours come from sha256 of those four. Another prompt or other weights give
 * a visibly different picture; the same ones give the same bytes.
 */
import { createHash } from 'node:crypto';
import { encodePng } from './png.ts';

export interface RenderRequest {
  /** The weights' digest (the version's, or the request's own). */
  weights: string;
  prompt: string;
  seed?: number;
  /** Which of the prediction's outputs. */
  index: number;
  width: number;
  height: number;
}

const SHAPES = 4;
type Shape = { kind: number; cx: number; cy: number; r: number; color: [number, number, number] };

export function renderPicture(req: RenderRequest): Buffer {
  const bytes = pictureBytes(req);
  const { width, height } = req;
  const top = [bytes[0]!, bytes[1]!, bytes[2]!];
  const bottom = [bytes[3]!, bytes[4]!, bytes[5]!];
  const shapes = Array.from({ length: SHAPES }, (_, i) => shapeOf(bytes.subarray(6 + i * 7, 13 + i * 7), width, height));
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const t = height > 1 ? y / (height - 1) : 0;
    for (let x = 0; x < width; x++) {
      let color = shapes.findLast((s) => covers(s, x, y))?.color;
      color ??= [0, 1, 2].map((c) => Math.round(top[c]! + (bottom[c]! - top[c]!) * t)) as [number, number, number];
      rgb.set(color, (y * width + x) * 3);
    }
  }
  return encodePng(width, height, rgb);
}

/** 64 bytes: sha256 of the request's parts (as JSON, so no two requests hash the same text), then sha256 of that. */
function pictureBytes(req: RenderRequest): Buffer {
  const first = createHash('sha256')
    .update(JSON.stringify([req.weights, req.prompt, req.seed ?? null, req.index]))
    .digest();
  return Buffer.concat([first, createHash('sha256').update(first).digest()]);
}

function shapeOf(b: Buffer, width: number, height: number): Shape {
  const side = Math.min(width, height);
  return {
    kind: b[0]! % 3,
    cx: (b[1]! / 255) * width,
    cy: (b[2]! / 255) * height,
    r: (0.12 + (b[3]! / 255) * 0.3) * side,
    color: [b[4]!, b[5]!, b[6]!],
  };
}

/** Disc, square or ring. */
function covers(s: Shape, x: number, y: number): boolean {
  const dx = x + 0.5 - s.cx;
  const dy = y + 0.5 - s.cy;
  if (s.kind === 1) return Math.abs(dx) <= s.r && Math.abs(dy) <= s.r;
  const d2 = dx * dx + dy * dy;
  return s.kind === 0 ? d2 <= s.r * s.r : d2 <= s.r * s.r && d2 >= 0.36 * s.r * s.r;
}
