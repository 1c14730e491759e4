/**
 * A catalog template's `weights` setting read (its schema is in config-sections.ts). Kept apart
 * from the schema and free of zod's values, so that the api, which reads it on every request
 * naming a template, does not bundle the full zod (about 450 KB, 130 ms of each cold start).
 */
import type { TemplateWeights, TemplateWeightsSetting } from './config-sections.ts';

/** The format of a `weights` setting. */
export const weightsFormatOf = (w: TemplateWeightsSetting): TemplateWeights => (typeof w === 'string' ? w : w.format);
/** The input that takes the weights' URL, or undefined for a template that loads /src/weights. */
export const weightsInputOf = (w: TemplateWeightsSetting): string | undefined => (typeof w === 'string' ? undefined : w.input);
