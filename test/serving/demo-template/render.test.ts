/** The demo template's picture: a valid PNG, the same bytes for the same request, another picture for another prompt, seed or weights. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodePng } from '#serving/demo-template/png';
import { type RenderRequest, renderPicture } from '#serving/demo-template/render';
import { weightsDigest } from '#serving/demo-template/weights';
import { colours, decodePng } from '#test-helpers/png';

const REQUEST: RenderRequest = { weights: 'sha256:' + 'ab'.repeat(32), prompt: 'a photo of cjw person on the moon', index: 0, width: 128, height: 128 };

describe('the PNG encoder', () => {
  it('writes what a strict reader decodes back to the same pixels', () => {
    const rgb = Buffer.from(Array.from({ length: 5 * 3 * 3 }, (_, i) => (i * 37) % 256));
    const png = encodePng(5, 3, rgb);
    const decoded = decodePng(png);
    expect(decoded).toMatchObject({ width: 5, height: 3, chunkTypes: ['IHDR', 'IDAT', 'IEND'] });
    expect(decoded.rgb).toEqual(rgb);
  });

  it('refuses pixels that do not fill the picture', () => {
    expect(() => encodePng(4, 4, new Uint8Array(47))).toThrow('a 4×4 RGB picture has 48 bytes, not 47');
    expect(() => encodePng(0, 4, new Uint8Array(0))).toThrow(RangeError);
  });
});

describe('the demo picture', () => {
  it('is a PNG of the size asked for, and a picture rather than a flat colour', () => {
    for (const [width, height] of [
      [128, 128],
      [64, 32],
    ] as const) {
      const decoded = decodePng(renderPicture({ ...REQUEST, width, height }));
      expect([decoded.width, decoded.height]).toEqual([width, height]);
      expect(colours(decoded.rgb)).toBeGreaterThan(10);
    }
  });

  it('is the same bytes for the same request', () => {
    expect(renderPicture(REQUEST).equals(renderPicture({ ...REQUEST }))).toBe(true);
    expect(renderPicture({ ...REQUEST, seed: 7 }).equals(renderPicture({ ...REQUEST, seed: 7 }))).toBe(true);
  });

  it('differs with the prompt, the weights, the seed and the output index', () => {
    const pixels = (r: RenderRequest) => decodePng(renderPicture(r)).rgb;
    const base = pixels(REQUEST);
    const others = [
      { ...REQUEST, prompt: 'a photo of cjw person on mars' },
      { ...REQUEST, weights: 'sha256:' + 'cd'.repeat(32) },
      { ...REQUEST, seed: 1 },
      { ...REQUEST, index: 1 },
    ].map(pixels);
    for (const other of others) expect(other.equals(base)).toBe(false);
    // Visibly different: a good share of the pixels changed, not a few.
    const changed = (a: Buffer, b: Buffer) => {
      let n = 0;
      for (let i = 0; i < a.length; i += 3) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) n++;
      return n / (a.length / 3);
    };
    for (const other of others) expect(changed(base, other)).toBeGreaterThan(0.25);
  });
});

describe("the weights' digest", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const folder = (files: Record<string, string>) => {
    const dir = mkdtempSync(join(tmpdir(), 'demo-weights-'));
    dirs.push(dir);
    for (const [name, body] of Object.entries(files)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), body);
    }
    return dir;
  };

  it('is a given digest as it is, and sha256 of a file', async () => {
    expect(await weightsDigest({ digest: ' sha256:abc ' })).toBe('sha256:abc');
    await expect(weightsDigest({ digest: '' })).rejects.toThrow('the weights digest is empty');
    const dir = folder({ 'lora.safetensors': 'weights' });
    // sha256 of the bytes "weights".
    expect(await weightsDigest({ path: join(dir, 'lora.safetensors') })).toBe('sha256:9a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c');
  });

  it("of a folder follows its files' names and contents, not where it is", async () => {
    const files = { 'model_index.json': '{}', 'unet/diffusion_pytorch_model.bin': 'unet', 'text_encoder/model.bin': 'te' };
    const digest = await weightsDigest({ path: folder(files) });
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await weightsDigest({ path: folder(files) })).toBe(digest);
    expect(await weightsDigest({ path: folder({ ...files, 'unet/diffusion_pytorch_model.bin': 'unet, trained longer' }) })).not.toBe(digest);
    const { 'text_encoder/model.bin': moved, ...rest } = files;
    expect(await weightsDigest({ path: folder({ ...rest, 'text_encoder/renamed.bin': moved }) })).not.toBe(digest);
  });
});
