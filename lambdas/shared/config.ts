/**
 * The one configuration schema of dreambooth-api.
 *
 * Read from cdk.json's context key `dreambooth` at synth time, baked into every Lambda bundle
 * (see infra/constructs/function.ts: Lambda environment variables are capped at 4 KB and the
 * template catalog alone is larger), and read by local mode, which merges `--config FILE` over it.
 * Its sections are in config-sections.ts; each trainer backend's own fields in its folder under
 * trainers/ (trainers/backends.ts lists them).
 */
import { z } from 'zod';
import { SCHEMA_KIT, ownerName, trainerName } from './config-fields.ts';
import {
  ApiSchema,
  BuildSchema,
  EgressSchema,
  LimitsSchema,
  MonitoringSchema,
  RegistrySchema,
  RetentionSchema,
  ServingSchema,
  SecretKmsKeysSchema,
  type TemplateSchema,
  TemplatesSchema,
  TimeoutsSchema,
  WebhooksSchema,
} from './config-sections.ts';
import { ConfigError } from './config-error.ts';
import { historyLimitProblem } from './history.ts';
import { BACKENDS, secretsOf, type BackendName, type TrainerSchemaOf } from './trainers/backends.ts';

export { TRAINER_NAME_MAX } from './config-fields.ts';
export { TemplateWeights, TemplateWeightsSetting } from './config-sections.ts';
export type { TrainerConfig } from './trainers/backends.ts';

/** Each backend's schema, built with the full zod (see Backend.configSchema), told apart by `backend`. */
const trainerSchemas = Object.values(BACKENDS).map((b) => b.configSchema(SCHEMA_KIT)) as unknown as [
  TrainerSchemaOf<BackendName>,
  ...TrainerSchemaOf<BackendName>[],
];
export const TrainerSchema = z.discriminatedUnion('backend', trainerSchemas);

const ConfigShape = z
  .object({
    trainers: z.record(trainerName, TrainerSchema).default({ demo: { backend: 'demo', steps_per_second: 10 } }),
    templates: TemplatesSchema,
    registry: RegistrySchema.default({ type: 'ecr', repository_prefix: 'dreambooth' }),
    /** Owner used for trainers that do not name one. */
    default_owner: ownerName.default('dreambooth'),
    limits: LimitsSchema,
    timeouts: TimeoutsSchema,
    webhooks: WebhooksSchema,
    build: BuildSchema,
    egress: EgressSchema,
    retention: RetentionSchema,
    serving: ServingSchema,
    monitoring: MonitoringSchema,
    secret_kms_keys: SecretKmsKeysSchema,
    api: ApiSchema,
  })
  .strict();

export const ConfigSchema = ConfigShape.superRefine(crossChecks);

/** What no one section can check alone: the default template, the secrets' keys, the history limit. */
function crossChecks(c: z.output<typeof ConfigShape>, ctx: z.RefinementCtx): void {
  if (!c.templates.catalog[c.templates.default]) {
    ctx.addIssue({
      code: 'custom',
      path: ['templates', 'default'],
      message: `names no template of templates.catalog (${Object.keys(c.templates.catalog).join(', ')})`,
    });
  }
  const secrets = configuredSecretNames(c);
  for (const [secret, key] of Object.entries(c.secret_kms_keys)) {
    const path = ['secret_kms_keys', secret];
    if (!secrets.includes(secret)) {
      ctx.addIssue({ code: 'custom', path, message: `names no secret of this configuration (${secrets.join(', ') || 'it names none'}); write the secret as the configuration names it` });
    } else if (secret.startsWith('arn:') && secret.split(':')[3] !== key.split(':')[3]) {
      // Secrets Manager encrypts a secret only with a key of its own region.
      ctx.addIssue({ code: 'custom', path, message: `the key is in ${key.split(':')[3]}, the secret in ${secret.split(':')[3]}: a secret's KMS key is in the secret's region` });
    }
  }
  const history = historyLimitProblem(c.timeouts);
  if (history) ctx.addIssue({ code: 'custom', path: ['timeouts'], message: history });
}

export type Config = z.output<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type TemplateConfig = z.output<typeof TemplateSchema>;

/** Every Secrets Manager secret the configuration names (its trainers' backends' and the registry's), as written. */
export function configuredSecretNames(c: Pick<Config, 'trainers' | 'registry'>): string[] {
  const names = Object.values(c.trainers).flatMap((t) => secretsOf(t).map((s) => s.secret));
  if (c.registry.type === 'oci' && c.registry.credentials_secret) names.push(c.registry.credentials_secret);
  return [...new Set(names)];
}

export { ConfigError } from './config-error.ts';

export function parseConfig(raw: unknown, source = 'dreambooth configuration'): Config {
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  dreambooth.${i.path.join('.') || '(root)'}: ${issueMessage(i)}`);
    throw new ConfigError(`Invalid ${source}:\n${lines.join('\n')}`);
  }
  return result.data;
}

/** A record key's own message (a trainer name), not zod's "Invalid key in record". */
function issueMessage(i: z.core.$ZodIssue): string {
  return i.code === 'invalid_key' && i.issues.length > 0 ? i.issues.map((k) => k.message).join('; ') : i.message;
}

/**
 * Deep merge of plain objects (arrays and scalars from `over` replace). An object of another
 * kind (a different `backend` or `type`) replaces the base object whole.
 */
export function mergeConfig(base: unknown, over: unknown): unknown {
  if (isPlainObject(base) && isPlainObject(over) && sameKind(base, over)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = k in out ? mergeConfig(out[k], v) : v;
    return out;
  }
  return over === undefined ? base : over;
}

const sameKind = (a: Record<string, unknown>, b: Record<string, unknown>) =>
  ['type', 'backend'].every((k) => !(k in b) || !(k in a) || a[k] === b[k]);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
