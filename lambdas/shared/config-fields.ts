/**
 * Field schemas that several parts of the configuration share: names, URLs, and the fields
 * every trainer has whatever its backend. The backends' own schemas are built from these
 * (SCHEMA_KIT, see lambdas/shared/trainers/backend.ts).
 */
import { z } from 'zod';
import { ECR_NAME_COMPONENT, ECR_NAME_RULE } from './ids.ts';

/** Template names (the catalog's keys). */
export const templateName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'use lowercase letters, digits, ".", "_" or "-" (at most 63)');

/**
 * A name that ends up in AWS names: owners are parts of ECR repository names (models are
 * `<prefix>/<owner>/<name>`); trainer names, the Trainings API's model names by default, keep
 * the same rule.
 */
const ecrName = (max: number) =>
  z
    .string()
    .max(max, `at most ${max} characters`)
    .regex(ECR_NAME_COMPONENT, `use ${ECR_NAME_RULE}, e.g. "gpu" or "gpu-1", not "gpu-" or "a--b"`);
/** Step Functions state names (at most 80 characters) carry trainer names: "Copy the <trainer> image into ECR". */
export const TRAINER_NAME_MAX = 48;
export const trainerName = ecrName(TRAINER_NAME_MAX);
export const ownerName = ecrName(63);

export const httpUrl = z
  .string()
  .url('must be an absolute URL')
  .refine((u) => /^https?:\/\//i.test(u), 'must start with http:// or https://');

/** The fields of every trainer, whatever its backend. */
export const trainerCommon = {
  /** Owner and name under which the Trainings API shows this trainer. */
  owner: ownerName.optional(),
  name: ownerName.optional(),
  /** A version id for the Trainings API route (`/v1/models/{owner}/{name}/versions/{version}/trainings`). */
  version: z.string().min(1).max(128).optional(),
  description: z.string().max(500).optional(),
  /**
   * Runs at once: per server for a pool (each of a cog trainer's `urls`), for the whole trainer
   * otherwise. Further trainings wait in the trainer's queue. Default: the backend's `concurrency`.
   */
  concurrency: z.number().int().min(1).max(1000).optional(),
};

/** What a backend's configuration schema is built with (Backend.configSchema). */
export const SCHEMA_KIT = { z, httpUrl, trainerCommon };
export type SchemaKit = typeof SCHEMA_KIT;
