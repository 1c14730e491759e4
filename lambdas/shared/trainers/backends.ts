/**
 * The trainer backends: one line each. The configuration's `backend` union, the backend names,
 * the capacity defaults, the secrets construct and every step's backend-specific behaviour
 * derive from this list; docs/adding-a-backend.md says how to add one.
 */
import type { z } from 'zod';
import type { Backend, SecretReader, TrainerFields } from './backend.ts';
import { cog } from './cog/index.ts';
import { demo } from './demo/index.ts';
import { replicate } from './replicate/index.ts';
import { sagemaker } from './sagemaker/index.ts';

export const BACKENDS = { cog, demo, replicate, sagemaker } as const;

export type BackendName = keyof typeof BACKENDS;

/** A backend registered under K: a whole Backend whose configuration's `backend` is K. */
type Registered<K extends string> = Omit<Backend<TrainerFields & { backend: K }>, 'secrets'> & {
  secrets: { readonly [field: string]: readonly SecretReader[] | undefined };
};
// Each entry is one, or nothing compiles (each backend's own `satisfies Backend` says more).
BACKENDS satisfies { readonly [K in BackendName]: Registered<K> };

/** Each backend's configuration schema, as config.ts builds it. */
export type TrainerSchemaOf<K extends BackendName> = ReturnType<(typeof BACKENDS)[K]['configSchema']>;

/** A configured trainer: one of the backends' configurations, told apart by `backend`. */
export type TrainerConfig = { [K in BackendName]: z.output<TrainerSchemaOf<K>> }[BackendName];

/**
 * The backend of a configured trainer. Typed for that trainer's configuration: the registry's
 * keys are its backends' `backend` literals (checked above), so the lookup is exact.
 */
export function backendOf<T extends TrainerConfig>(t: T): Backend<T> {
  return BACKENDS[t.backend as BackendName] as unknown as Backend<T>;
}

/** The backend of that name (as a training records it), if there is one. */
export function backendNamed(name: string): Backend<TrainerConfig> | undefined {
  return Object.hasOwn(BACKENDS, name) ? (BACKENDS[name as BackendName] as unknown as Backend<TrainerConfig>) : undefined;
}

/** The secrets a trainer's configuration names (Backend.secrets), as written, each with who reads it. */
export function secretsOf(t: TrainerConfig): { field: string; secret: string; readers: readonly SecretReader[] }[] {
  const fields: { readonly [field: string]: readonly SecretReader[] | undefined } = backendOf(t).secrets;
  return Object.entries(fields).flatMap(([field, readers]) => {
    const secret = (t as Record<string, unknown>)[field];
    return typeof secret === 'string' && secret.length > 0 ? [{ field, secret, readers: readers ?? [] }] : [];
  });
}
