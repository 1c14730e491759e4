/**
 * The one configuration schema of dreambooth-api.
 *
 * Read from cdk.json's context key `dreambooth` at synth time, baked into every Lambda bundle
 * (see infra/constructs/function.ts: Lambda environment variables are capped at 4 KB and the
 * template catalog alone is larger), and read by local mode, which merges `--config FILE` over it.
 */
import { z } from 'zod';
import { historyLimitProblem } from './history.ts';
import { ECR_NAME_COMPONENT, ECR_NAME_RULE, ECR_REPOSITORY_NAME } from './ids.ts';
import { ConfigError } from './config-error.ts';

const name = z
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
const trainerName = ecrName(TRAINER_NAME_MAX);
const ownerName = ecrName(63);

const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;

const httpUrl = z
  .string()
  .url('must be an absolute URL')
  .refine((u) => /^https?:\/\//i.test(u), 'must start with http:// or https://');

const trainerCommon = {
  /** Owner and name under which the Trainings API shows this trainer. */
  owner: ownerName.optional(),
  name: ownerName.optional(),
  /** A version id for the Trainings API route (`/v1/models/{owner}/{name}/versions/{version}/trainings`). */
  version: z.string().min(1).max(128).optional(),
  description: z.string().max(500).optional(),
  /**
   * Runs at once: per server for a cog trainer (each of `urls`), for the whole trainer
   * otherwise. Further trainings wait in the trainer's queue. Default: see DEFAULT_CONCURRENCY.
   */
  concurrency: z.number().int().min(1).max(1000).optional(),
};

export const CogTrainerSchema = z
  .object({
    backend: z.literal('cog'),
    /** Base URL of a Cog >= 0.7 server; may carry a path prefix. */
    url: httpUrl.optional(),
    /** Several Cog servers of one image, used as one pool; each run stays on the server that took it. */
    urls: z.array(httpUrl).min(1).max(100).optional(),
    /** Secrets Manager secret (name or ARN) holding Cog's WEBHOOK_AUTH_TOKEN, if the server sets one. */
    webhook_auth_token_secret: z.string().min(1).optional(),
    /**
     * Secrets Manager secret (name or ARN) holding the token of this trainer's upload relay
     * (bin/cog-upload-relay.ts); without it the trainer-upload routes refuse this trainer.
     */
    upload_token_secret: z.string().min(1).optional(),
    ...trainerCommon,
  })
  .strict()
  .refine((t) => (t.url === undefined) !== (t.urls === undefined), { message: 'set either url or urls (a pool), not both', path: ['url'] });

export const DemoTrainerSchema = z
  .object({
    backend: z.literal('demo'),
    /** Training speed of the demo trainer. */
    steps_per_second: z.number().positive().max(10_000).default(10),
    /** Where the demo trainer's Cog protocol is served; local mode fills it in. */
    url: httpUrl.optional(),
    /** Servers of the demo trainer; local mode starts one per slot of `concurrency`. */
    urls: z.array(httpUrl).min(1).max(100).optional(),
    ...trainerCommon,
  })
  .strict();

export const ReplicateTrainerSchema = z
  .object({
    backend: z.literal('replicate'),
    /** Replicate API base URL. */
    api_url: httpUrl.default('https://api.replicate.com'),
    /** A pinned trainer version (64 hex); otherwise the request's trainer_version is used. */
    trainer_version: z.string().regex(/^[0-9a-f]{64}$/).optional(),
    /** Secrets Manager secret holding the Replicate API token. */
    api_token_secret: z.string().min(1),
    /**
     * The Replicate model (`owner/name`) whose versions this trainer runs: with it the API
     * checks inputs at submit against the version's `openapi_schema`.
     */
    replicate_model: z.string().regex(/^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/, 'must be owner/name').optional(),
    ...trainerCommon,
  })
  .strict();

/**
 * A Cog trainer image run as one SageMaker training job per training (see
 * docs/sagemaker.md). The image is copied into the stack's ECR by digest before its first job.
 */
export const SageMakerTrainerSchema = z
  .object({
    backend: z.literal('sagemaker'),
    /** The Cog image, pinned by digest: `<registry>/<repository>@sha256:<64 hex>`. */
    image: z
      .string()
      .regex(/^[a-z0-9.:-]+\/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$/, 'must be <registry>/<repository>@sha256:<64 hex> (pin the image by digest)'),
    /**
     * `predict` runs the image's predictor, `train` its `train:` function (Cog >= 0.9,
     * `--x-mode train`). Left out, the runner reads the image's cog.yaml (what its
     * `run.cog.config` label holds): `train` when it names a train function.
     */
    mode: z.enum(['predict', 'train']).optional(),
    instance_type: z.string().regex(/^ml\.[a-z0-9]+\.[a-z0-9]+$/, 'must be a SageMaker instance type such as ml.g5.2xlarge').default('ml.g5.2xlarge'),
    /** The job's EBS volume (the image's model downloads and the output archive live there). */
    volume_gb: z.number().int().min(1).max(16_384).default(100),
    /** SageMaker stops the job after this long (MaxRuntimeInSeconds). */
    max_runtime_seconds: z.number().int().min(60).max(28 * 86_400).default(4 * 3600),
    /** Managed spot training: cheaper, may be interrupted; the wait for capacity counts against max_wait_seconds. */
    spot: z.boolean().default(false),
    /** Spot only: run time plus waiting for spot capacity (MaxWaitTimeInSeconds, >= max_runtime_seconds). */
    max_wait_seconds: z.number().int().min(60).optional(),
    /** Warm pool: keep the instance this long after a job (its own quota, 0 by default). */
    keep_alive_seconds: z.number().int().min(0).max(3600).default(0),
    /** Secrets Manager secret with `{"username", "password"}` for the image's source registry. */
    source_credentials_secret: z.string().min(1).optional(),
    /** Why this trainer cannot run here; local mode sets it when no docker engine is reachable. */
    unavailable: z.string().optional(),
    ...trainerCommon,
  })
  .strict()
  .refine((t) => !t.spot || (t.max_wait_seconds ?? 0) >= t.max_runtime_seconds, {
    message: 'with spot, max_wait_seconds must be set and at least max_runtime_seconds',
    path: ['max_wait_seconds'],
  })
  // SageMaker refuses the pair: "warm pools cannot be used with spot instances"
  // (https://docs.aws.amazon.com/sagemaker/latest/dg/train-warm-pools.html#train-warm-pools-considerations).
  .refine((t) => !(t.spot && t.keep_alive_seconds > 0), {
    message: 'SageMaker warm pools cannot be used with spot instances: set spot to false or keep_alive_seconds to 0',
    path: ['keep_alive_seconds'],
  });

export const TrainerSchema = z.discriminatedUnion('backend', [
  CogTrainerSchema,
  DemoTrainerSchema,
  ReplicateTrainerSchema,
  SageMakerTrainerSchema,
]);

/** What a template accepts as weights (also the values of the `ai.dreambooth.weights` image label, lambdas/api/templates.ts). */
export const TemplateWeights = z.enum(['diffusers', 'any']);
export type TemplateWeights = z.infer<typeof TemplateWeights>;

export const TemplateSchema = z
  .object({
    /** Image repository, e.g. `r8.im/anotherjesse/vanilla-template`. */
    repository: z
      .string()
      .min(1)
      .regex(/^([a-z0-9.:_/-]+|oci:[^@\s]+)$/, 'must be an image repository without tag or digest (or oci:<layout dir>)'),
    /** Known good manifest digests (64 hex, without `sha256:`), newest first. */
    digests: z.array(z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters')).default([]),
    description: z.string().max(1000).default(''),
    inputs: z.string().max(1000).default(''),
    /**
     * What the template loads from /src/weights, checked when the weights are staged:
     * `diffusers` (model_index.json and every component folder it names, as the dream-templates
     * load) or `any` (whatever the trainer returns: a LoRA .safetensors, a tar of files, …).
     */
    weights: TemplateWeights.default('diffusers'),
  })
  .strict();

export const RegistrySchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('ecr'),
      /** Repository name prefix; a model `owner/name` is pushed to `<prefix>/<owner>/<name>`. */
      repository_prefix: z
        .string()
        .max(128, 'at most 128 characters (ECR repository names end at 256, and `/<owner>/<name>` follows)')
        .refine((p) => ECR_REPOSITORY_NAME.test(p.replace(/\/+$/, '')), `must be "/"-separated parts of ${ECR_NAME_RULE}`)
        .default('dreambooth'),
    })
    .strict(),
  z
    .object({
      type: z.literal('oci'),
      /** Registry host (and optional path), e.g. `r8.im` or `ghcr.io/acme`. */
      host: z.string().min(1).regex(/^[a-z0-9.:-]+(\/[a-z0-9._/-]+)?$/),
      /** Secrets Manager secret holding `{"username": …, "password": …}`. */
      credentials_secret: z.string().min(1),
    })
    .strict(),
  z
    .object({
      /** An OCI image layout directory on disk: local mode on a machine without a registry. */
      type: z.literal('layout'),
      dir: z.string().min(1),
    })
    .strict(),
]);

export const ConfigSchema = z
  .object({
    trainers: z.record(trainerName, TrainerSchema).default({ demo: { backend: 'demo', steps_per_second: 10 } }),
    templates: z
      .object({
        default: name,
        catalog: z.record(name, TemplateSchema),
      })
      .strict(),
    registry: RegistrySchema.default({ type: 'ecr', repository_prefix: 'dreambooth' }),
    /** Owner used for trainers that do not name one. */
    default_owner: ownerName.default('dreambooth'),
    limits: z
      .object({
        body_max_bytes: z.number().int().positive().default(1024 * 1024),
        notes_max_chars: z.number().int().positive().default(10_000),
        archive_max_bytes: z.number().int().positive().default(10 * 1024 ** 3),
        archive_max_entries: z.number().int().positive().default(10_000),
        archive_max_uncompressed_bytes: z.number().int().positive().default(20 * 1024 ** 3),
        archive_max_ratio: z.number().positive().default(200),
        upload_max_bytes: z.number().int().positive().default(1024 ** 3),
        /** Items per page of the list routes. */
        page_size: z.number().int().min(1).max(1000).default(100),
      })
      .strict()
      .prefault({}),
    timeouts: z
      .object({
        /** How long a training may take, from the execution's start. */
        training_seconds: z.number().int().positive().default(6 * 3600),
        /** The callback wait is a loop: each wait lasts this long, then the trainer is asked. */
        callback_poll_seconds: z.number().int().positive().default(900),
        /** Heartbeat of the callback wait; must be below callback_poll_seconds. */
        callback_heartbeat_seconds: z.number().int().positive().default(600),
        stage_seconds: z.number().int().positive().default(900),
        /** CodeBuild's build timeout; its range is 5 to 480 minutes. */
        build_minutes: z.number().int().min(5).max(480).default(60),
        /**
         * How long a build may wait in CodeBuild's queue (the account's concurrent-build quota) before
         * CodeBuild drops it; its range is 5 to 480 minutes. The state machine waits for both.
         */
        build_queued_minutes: z.number().int().min(5).max(480).default(60),
        step_seconds: z.number().int().positive().default(60),
        /** How long a training may wait in its trainer's queue for a free slot. */
        queue_seconds: z.number().int().positive().default(24 * 3600),
        /**
         * The slot wait is a loop too: a waiting training is woken at once when a slot frees; this
         * is only how often it also looks for itself (a lost wake-up, a crashed slot holder
         * whose end the execution-status rule missed); also the lease after which a holder's
         * execution is checked.
         */
        queue_poll_seconds: z.number().int().positive().default(300),
      })
      .strict()
      .prefault({})
      .refine((t) => t.callback_heartbeat_seconds < t.callback_poll_seconds, {
        message: 'callback_heartbeat_seconds must be lower than callback_poll_seconds',
        path: ['callback_heartbeat_seconds'],
      }),
    webhooks: z
      .object({
        timeout_seconds: z.number().int().positive().max(30).default(15),
        /** Step Functions Retry of the webhook step: interval, backoff, attempts, max delay (FULL jitter). */
        retry_interval_seconds: z.number().int().positive().default(5),
        retry_backoff_rate: z.number().min(1).default(4),
        retry_max_attempts: z.number().int().min(0).max(20).default(8),
        retry_max_delay_seconds: z.number().int().positive().default(36_000),
      })
      .strict()
      .prefault({}),
    build: z
      .object({
        /**
         * `append`: the daemonless build (template layers mounted or copied registry-side, one new
         * weights layer streamed from S3), on CodeBuild Lambda compute when the archive fits.
         * `docker`: `docker build` + `docker push` in a privileged CodeBuild project.
         */
        strategy: z.enum(['append', 'docker']).default('append'),
        /**
         * Staged archives up to this size are built on CodeBuild Lambda compute (starts in
         * seconds, no queue, but 15 minutes at most); larger ones on EC2 compute.
         */
        lambda_compute_max_bytes: z.number().int().nonnegative().default(4 * 1024 ** 3),
        /**
         * Whether the model registry mounts a blob from another repository of the registry
         * instead of starting an upload (a mount that fails answers 202 and the build copies the
         * layer). ECR mounts only with the registry setting BLOB_MOUNTING enabled, between
         * repositories of identical encryption, and not for pull-through-cache images. Only when
         * true does a template in the model's registry count as free to build on (Lambda compute);
         * otherwise a model's first version from a template builds on EC2 compute, where copying
         * gigabytes of layers has no 15-minute cap.
         */
        blob_mounting: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    egress: z
      .object({
        /** CIDRs that user-supplied URLs may reach although private (local mode uses loopback). */
        allow: z.array(z.string()).default([]),
      })
      .strict()
      .prefault({}),
    retention: z
      .object({
        staged_archive_days: z.number().int().positive().default(7),
      })
      .strict()
      .prefault({}),
    monitoring: z
      .object({
        /**
         * SNS topic (an existing one, which you subscribe to) that the alarms notify when they go
         * off and when they recover. Unset, the alarms notify nobody and synth warns.
         */
        alarm_topic_arn: z.string().regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/, 'an SNS topic ARN').optional(),
      })
      .strict()
      .prefault({}),
    /**
     * Secrets encrypted with a customer-managed KMS key, by the name or ARN the configuration
     * gives them: the functions and build projects that read a secret may decrypt with its key,
     * through Secrets Manager only. Secrets under `aws/secretsmanager` need no entry.
     */
    secret_kms_keys: z
      .record(
        z.string().min(1),
        z.string().regex(KMS_KEY_ARN, 'must be a KMS key ARN, arn:aws:kms:<region>:<account>:key/<key id> (not an alias: IAM grants use of a key by its ARN)'),
      )
      .default({}),
    api: z
      .object({
        /**
         * Set API Gateway's CloudWatch logging role for the whole account and region
         * (`AWS::ApiGateway::Account`), replacing any role set before: the stage's logs need one
         * set. `false` when the account already has one (another stack or the operator set it).
         */
        set_account_logging_role: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
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
  });

export type Config = z.output<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type TrainerConfig = z.output<typeof TrainerSchema>;
export type TemplateConfig = z.output<typeof TemplateSchema>;
export type SageMakerTrainerConfig = z.output<typeof SageMakerTrainerSchema>;

/** Every Secrets Manager secret the configuration names (trainers' and the registry's), as written. */
export function configuredSecretNames(c: Pick<Config, 'trainers' | 'registry'>): string[] {
  const names = Object.values(c.trainers).flatMap((t) => {
    switch (t.backend) {
      case 'cog':
        return [t.webhook_auth_token_secret, t.upload_token_secret];
      case 'replicate':
        return [t.api_token_secret];
      case 'sagemaker':
        return [t.source_credentials_secret];
      default:
        return [];
    }
  });
  if (c.registry.type === 'oci') names.push(c.registry.credentials_secret);
  return [...new Set(names.filter((n): n is string => Boolean(n)))];
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
