/**
 * The error for invalid configuration, in a module of its own: both the schema (`config.ts`,
 * zod) and the Lambda's reader (`runtime-config.ts`, no zod) throw it.
 */

/** Thrown for invalid configuration; the message names each offending key. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
