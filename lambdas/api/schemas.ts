import { z } from 'zod';

export const MODEL_RE = /^[a-z0-9][a-z0-9._-]{0,99}\/[a-z0-9][a-z0-9._-]{0,99}$/;

const httpUrl = z
  .string({ error: 'must be a string URL' })
  .max(2048, 'must be at most 2048 characters')
  .refine((u) => /^https?:\/\/[^\s]+$/i.test(u) && URL.canParse(u), 'must be an http:// or https:// URL');

/** The seed's `POST /v1/trainings` body. */
export function seedRequestSchema(notesMax: number) {
  return z
    .object({
      input: z.record(z.string(), z.unknown(), { error: 'must be a JSON object of trainer inputs' }),
      trainer_version: z.string({ error: 'is required: a configured trainer name (see GET /v1/trainers)' }).min(1).max(128),
      template_version: z.string({ error: 'must be a string' }).min(1).max(512).optional(),
      model: z
        .string({ error: 'is required: the destination model as owner/name' })
        .regex(MODEL_RE, 'must be owner/name with lowercase letters, digits, "-", "_" or "."'),
      notes: z.string({ error: 'must be a string' }).max(notesMax, `must be at most ${notesMax} characters`).nullish(),
      webhook_completed: httpUrl.nullish(),
    })
    .strict();
}
export type SeedRequest = z.infer<ReturnType<typeof seedRequestSchema>>;

export const EVENTS = ['start', 'output', 'logs', 'completed'] as const;

/** Replicate's `POST /v1/models/{owner}/{name}/versions/{version}/trainings` body, plus our extensions. */
export function trainingsRequestSchema(notesMax: number) {
  return z
    .object({
      destination: z
        .string({ error: 'is required: the model to push to, as owner/name' })
        .regex(MODEL_RE, 'must be owner/name with lowercase letters, digits, "-", "_" or "."'),
      input: z.record(z.string(), z.unknown(), { error: 'must be a JSON object of trainer inputs' }),
      webhook: httpUrl.nullish(),
      webhook_events_filter: z
        .array(z.enum(EVENTS, { error: `must hold only ${EVENTS.join(', ')}` }), { error: 'must be a list of events' })
        .min(1, 'must name at least one event')
        .optional(),
      /** Our extensions: the template to build on, and notes for the version. */
      template_version: z.string({ error: 'must be a string' }).min(1).max(512).optional(),
      notes: z.string({ error: 'must be a string' }).max(notesMax, `must be at most ${notesMax} characters`).nullish(),
    })
    .strict();
}

/** `POST /v1/models/{owner}/{name}/versions`: a new version from a training's weights on another template. */
export function retemplateSchema(notesMax: number) {
  return z
    .object({
      training_id: z.string({ error: 'is required: the succeeded training whose weights to use' }).regex(/^[a-z0-9]{20,40}$/, 'is not a training id'),
      template_version: z.string({ error: 'is required: the template to build on' }).min(1).max(512),
      notes: z.string({ error: 'must be a string' }).max(notesMax, `must be at most ${notesMax} characters`).nullish(),
      webhook: httpUrl.nullish(),
    })
    .strict();
}
