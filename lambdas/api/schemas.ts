import * as z from '#shared/zod';
import { ECR_NAME_COMPONENT, ECR_NAME_RULE } from '#shared/ids';

/**
 * A destination model, `owner/name`: each part an ECR repository-name component, so the image
 * can be pushed. ECR's rule always, whatever the configured registry: it is stricter than the
 * OCI distribution spec's (which also allows `__` and `--`), so a model accepted here can be
 * pushed to any registry, and the names the API accepts do not change with the deployment.
 */
const COMPONENT = ECR_NAME_COMPONENT.source.slice(1, -1);
export const MODEL_RE = new RegExp(`^${COMPONENT}/${COMPONENT}$`);
export const MODEL_MAX = 200;
export const MODEL_RULE = `owner/name of ${ECR_NAME_RULE}, e.g. acme/my-model`;

const httpUrl = z.string({ error: 'must be a string URL' }).check(
  z.maxLength(2048, 'must be at most 2048 characters'),
  z.refine((u) => /^https?:\/\/[^\s]+$/i.test(u) && URL.canParse(u), 'must be an http:// or https:// URL'),
);

const inputs = () => z.record(z.string(), z.unknown(), { error: 'must be a JSON object of trainer inputs' });
/** The owner whose repositories hold the service's own template images (`<registry>/templates/<name>`). */
export const RESERVED_OWNER = 'templates';
const model = (error: string) =>
  z.string({ error }).check(
    z.regex(MODEL_RE, `must be ${MODEL_RULE}`),
    z.maxLength(MODEL_MAX, `must be at most ${MODEL_MAX} characters`),
    z.refine((m) => m.split('/')[0] !== RESERVED_OWNER, `the owner "${RESERVED_OWNER}" is reserved for the service's template images; choose another owner`),
  );
const templateVersion = (error = 'must be a string') => z.string({ error }).check(z.minLength(1), z.maxLength(512));
const notes = (notesMax: number) =>
  z.nullish(z.string({ error: 'must be a string' }).check(z.maxLength(notesMax, `must be at most ${notesMax} characters`)));

/** The seed's `POST /v1/trainings` body. */
export function seedRequestSchema(notesMax: number) {
  return z.strictObject({
    input: inputs(),
    trainer_version: z
      .string({ error: 'is required: a configured trainer name (see GET /v1/trainers)' })
      .check(z.minLength(1), z.maxLength(128)),
    template_version: z.optional(templateVersion()),
    model: model('is required: the destination model as owner/name'),
    notes: notes(notesMax),
    webhook_completed: z.nullish(httpUrl),
  });
}
export type SeedRequest = z.infer<ReturnType<typeof seedRequestSchema>>;

export const EVENTS = ['start', 'output', 'logs', 'completed'] as const;

/** Replicate's `POST /v1/models/{owner}/{name}/versions/{version}/trainings` body, plus our extensions. */
export function trainingsRequestSchema(notesMax: number) {
  return z.strictObject({
    destination: model('is required: the model to push to, as owner/name'),
    input: inputs(),
    webhook: z.nullish(httpUrl),
    webhook_events_filter: z.optional(
      z
        .array(z.enum(EVENTS, { error: `must hold only ${EVENTS.join(', ')}` }), { error: 'must be a list of events' })
        .check(z.minLength(1, 'must name at least one event')),
    ),
    /** Our extensions: the template to build on, and notes for the version. */
    template_version: z.optional(templateVersion()),
    notes: notes(notesMax),
  });
}

/** `POST /v1/models/{owner}/{name}/versions`: a new version from a training's weights on another template. */
export function retemplateSchema(notesMax: number) {
  return z.strictObject({
    training_id: z
      .string({ error: 'is required: the succeeded training whose weights to use' })
      .check(z.regex(/^[a-z0-9]{20,40}$/, 'is not a training id')),
    template_version: templateVersion('is required: the template to build on'),
    notes: notes(notesMax),
    webhook: z.nullish(httpUrl),
  });
}

/**
 * Replicate's create-prediction body: `POST /v1/predictions` (with `version`: a 64-hex version
 * id or `owner/name:version`) and `POST /v1/models/{owner}/{name}/predictions` (without: the
 * model's latest version). `stream` is accepted, as Replicate's clients may send it, and
 * ignored: outputs are not streamed.
 */
export function predictionRequestSchema(withVersion: boolean) {
  const common = {
    input: z.record(z.string(), z.unknown(), { error: "is required: a JSON object of the model's inputs" }),
    webhook: z.nullish(httpUrl),
    webhook_events_filter: z.optional(
      z
        .array(z.enum(EVENTS, { error: `must hold only ${EVENTS.join(', ')}` }), { error: 'must be a list of events' })
        .check(z.minLength(1, 'must name at least one event')),
    ),
    stream: z.optional(z.boolean({ error: 'must be true or false' })),
  };
  const version = z
    .string({ error: 'is required: a version id (64 hex) or owner/name:version' })
    .check(z.minLength(1), z.maxLength(MODEL_MAX + 66, 'is too long for owner/name:version'));
  return withVersion ? z.strictObject({ version, ...common }) : z.strictObject(common);
}
export type PredictionRequest = { version?: string } & z.infer<ReturnType<typeof predictionRequestSchema>>;
