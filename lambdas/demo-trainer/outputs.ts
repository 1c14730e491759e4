/**
 * What the demo trainer returns: an output.zip of a diffusers pipeline, or, with
 * `output_format: 'lora'`, one `lora.safetensors`, shaped like a LoRA
 * trainer's (a safetensors header — 8-byte little-endian length, then JSON naming each tensor's
 * dtype, shape and byte range — and the tensors' bytes), for templates that take their weights
 * through an input (local mode's demo-lora). Random like the diffusers output: each training's
 * weights differ, so each makes its own version.
 */
import { randomBytes } from 'node:crypto';
import yazl from 'yazl';

const LORA_FILE = 'lora.safetensors';

/** Rank-`rank` down/up pairs for a few attention projections of width `width`, float32. */
export function loraSafetensors(input: Record<string, unknown>, rank = 4, width = 320): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', trainer: 'dreambooth-api demo trainer', instance_prompt: String(input.instance_prompt ?? '') } };
  let offset = 0;
  for (const proj of ['to_q', 'to_k', 'to_v', 'to_out.0']) {
    for (const [part, shape] of [['lora_A', [rank, width]], ['lora_B', [width, rank]]] as const) {
      const bytes = shape[0] * shape[1] * 4;
      header[`unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.${proj}.${part}.weight`] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
      offset += bytes;
    }
  }
  // The header is padded with spaces to a multiple of 8, as the reference writer does.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([length, Buffer.from(json), randomBytes(offset)]);
}

/** A trainer output as it is uploaded. */
export interface OutputFile {
  name: string;
  body: Buffer;
  contentType: string;
}

/** The diffusers pipeline (the default), or with `output_format: 'lora'` a single LoRA file. */
export async function outputFile(input: Record<string, unknown>, say: (line: string) => void): Promise<OutputFile> {
  if (input.output_format === 'lora') {
    say(`Saving the LoRA weights to ${LORA_FILE}`);
    return { name: LORA_FILE, body: loraSafetensors(input), contentType: 'application/octet-stream' };
  }
  say('Saving the pipeline to output.zip');
  return { name: 'output.zip', body: await outputZip(input), contentType: 'application/zip' };
}

/** A small archive with the layout of diffusers' `save_pretrained` and the trainer's extras. */
export async function outputZip(input: Record<string, unknown>): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const json = (v: unknown) => Buffer.from(JSON.stringify(v, null, 2));
  zip.addBuffer(
    json({
      _class_name: 'StableDiffusionPipeline',
      _diffusers_version: '0.14.0',
      feature_extractor: [null, null],
      requires_safety_checker: false,
      safety_checker: [null, null],
      scheduler: ['diffusers', 'DDIMScheduler'],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    }),
    'model_index.json',
  );
  zip.addBuffer(json({ _class_name: 'UNet2DConditionModel', sample_size: 64 }), 'unet/config.json');
  zip.addBuffer(randomBytes(64 * 1024), 'unet/diffusion_pytorch_model.bin');
  zip.addBuffer(json({ _class_name: 'AutoencoderKL', latent_channels: 4 }), 'vae/config.json');
  zip.addBuffer(randomBytes(16 * 1024), 'vae/diffusion_pytorch_model.bin');
  zip.addBuffer(json({ architectures: ['CLIPTextModel'] }), 'text_encoder/config.json');
  zip.addBuffer(randomBytes(16 * 1024), 'text_encoder/pytorch_model.bin');
  zip.addBuffer(json({ '<|startoftext|>': 49406, '<|endoftext|>': 49407 }), 'tokenizer/vocab.json');
  zip.addBuffer(Buffer.from('#version: 0.2\n'), 'tokenizer/merges.txt');
  zip.addBuffer(json({ model_max_length: 77 }), 'tokenizer/tokenizer_config.json');
  zip.addBuffer(json({ _class_name: 'DDIMScheduler', num_train_timesteps: 1000 }), 'scheduler/scheduler_config.json');
  zip.addBuffer(json({ ...input, trainer: 'dreambooth-api demo trainer' }), 'args.json');
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

