/** Replicate's prediction object, as its API and its webhooks send it, and what we read of it. */
import * as z from '../../zod.ts';
import { TrainerFailedError, type RunState } from '../types.ts';

const PredictionSchema = z.object({
  id: z.string().check(z.minLength(1)),
  status: z.enum(['starting', 'processing', 'succeeded', 'failed', 'canceled', 'aborted']),
  output: z.optional(z.unknown()),
  logs: z.nullish(z.string()),
  error: z.optional(z.unknown()),
  metrics: z.nullish(z.object({ predict_time: z.optional(z.number()) })),
});
export type Prediction = z.infer<typeof PredictionSchema>;

export function parsePrediction(raw: unknown): Prediction {
  const parsed = PredictionSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new TrainerFailedError(`not a Replicate prediction: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}

export function toRunState(p: Prediction): RunState {
  return {
    // Replicate stops a run it gave up on as `aborted`: for us, the trainer canceled it.
    status: p.status === 'aborted' ? 'canceled' : p.status,
    output: outputUrl(p.output),
    logs: p.logs ?? null,
    error: p.error == null ? null : typeof p.error === 'string' ? p.error : JSON.stringify(p.error),
    predict_time: p.metrics?.predict_time ?? null,
  };
}

/**
 * The output: a URL; or an object's `weights` URL (Replicate's trainers answer `{version, weights}`);
 * or among a list's or an object's URLs the first archive or weights file (`.zip`, `.tar`,
 * `.tar.gz`, `.tgz`, `.safetensors`), or the only URL.
 */
export function outputUrl(output: unknown): string | null {
  if (typeof output === 'string') return output;
  const weights = (output as { weights?: unknown } | null)?.weights;
  if (typeof weights === 'string' && URL.canParse(weights)) return weights;
  const values = Array.isArray(output) ? output : output && typeof output === 'object' ? Object.values(output) : [];
  const urls = values.filter((v): v is string => typeof v === 'string' && URL.canParse(v));
  return urls.find((u) => WEIGHTS_FILE.test(new URL(u).pathname)) ?? (urls.length === 1 ? urls[0]! : null);
}

const WEIGHTS_FILE = /\.(zip|tar|tar\.gz|tgz|safetensors)$/i;
