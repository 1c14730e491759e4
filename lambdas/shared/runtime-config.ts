/**
 * The configuration a Lambda runs with. It was validated by `parseConfig` at synth time (or by
 * local mode) before it was baked in or set, so a JSON.parse suffices here: this module stays
 * free of zod, which would cost every cold start its import.
 */
import type { Config } from './config.ts';
import { ConfigError } from './config-error.ts';

let cached: Config | undefined;
/** The configuration a Lambda runs with (baked in at bundle time, or set by local mode). */
export function runtimeConfig(): Config {
  if (!cached) {
    const raw = process.env.DREAMBOOTH_CONFIG;
    if (!raw) throw new ConfigError('DREAMBOOTH_CONFIG is not set');
    cached = JSON.parse(raw) as Config;
  }
  return cached;
}
/** For tests and local mode, which may change the configuration between runs. */
export function resetRuntimeConfig(): void {
  cached = undefined;
}
