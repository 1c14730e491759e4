/**
 * The sections of the configuration beside its trainers: templates, the model registry, limits,
 * timeouts, webhooks, builds, egress, retention, monitoring, secrets' keys and the API stage.
 * lambdas/shared/config.ts puts them together under their keys.
 */
import { z } from 'zod';
import { templateName } from './config-fields.ts';
import { ECR_NAME_RULE, ECR_REPOSITORY_NAME } from './ids.ts';

const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;

/** What a template accepts as weights (also the values of the `ai.dreambooth.weights` image label, lambdas/api/templates.ts). */
export const TemplateWeights = z.enum(['diffusers', 'any']);
export type TemplateWeights = z.infer<typeof TemplateWeights>;

/** A Cog input name, as Cog's predictors name their parameters. */
const INPUT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/**
 * A template's `weights`: a format alone (the template loads them from /src/weights, and each
 * version is an image), or `{format, input}`: the template loads them at run time from the URL
 * its input `input` receives (e.g. `replicate_weights`), and a version is the template plus a
 * weights file, recorded without a build.
 */
export const TemplateWeightsSetting = z.union([
  TemplateWeights,
  z
    .object({
      format: TemplateWeights,
      input: z.string().regex(INPUT_NAME, 'must be the name of an input of the template (letters, digits, _)'),
    })
    .strict(),
]);
export type TemplateWeightsSetting = z.infer<typeof TemplateWeightsSetting>;

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
     * What the template loads, checked when the weights are staged: `diffusers`
     * (model_index.json and every component folder it names, as the dream-templates load) or
     * `any` (whatever the trainer returns: a LoRA .safetensors, a tar of files, …), from
     * /src/weights; or `{format, input}`: from a URL in its input `input`, with no build.
     */
    weights: TemplateWeightsSetting.default('diffusers'),
    /** How this template's versions are served, over the `serving` section's defaults. */
    serving: z.lazy(() => TemplateServingSchema).optional(),
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

/** The `templates` section: the catalog, and the template a training gets when it names none. */
export const TemplatesSchema = z
  .object({
    default: templateName,
    catalog: z.record(templateName, TemplateSchema),
  })
  .strict();

export const LimitsSchema = z
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
  .prefault({});

export const TimeoutsSchema = z
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
  });

export const WebhooksSchema = z
  .object({
    timeout_seconds: z.number().int().positive().max(30).default(15),
    /** Step Functions Retry of the webhook step: interval, backoff, attempts, max delay (FULL jitter). */
    retry_interval_seconds: z.number().int().positive().default(5),
    retry_backoff_rate: z.number().min(1).default(4),
    retry_max_attempts: z.number().int().min(0).max(20).default(8),
    retry_max_delay_seconds: z.number().int().positive().default(36_000),
  })
  .strict()
  .prefault({});

export const BuildSchema = z
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
  .prefault({});

export const EgressSchema = z
  .object({
    /** CIDRs that user-supplied URLs may reach although private (local mode uses loopback). */
    allow: z.array(z.string()).default([]),
  })
  .strict()
  .prefault({});

export const RetentionSchema = z
  .object({
    staged_archive_days: z.number().int().positive().default(7),
    /** Days a prediction's input, outputs and record are kept: a customer's prompts and pictures are theirs. */
    prediction_days: z.number().int().positive().default(1),
  })
  .strict()
  .prefault({});

export const MonitoringSchema = z
  .object({
    /**
     * SNS topic (an existing one, which you subscribe to) that the alarms notify when they go
     * off and when they recover. Unset, the alarms notify nobody and synth warns.
     */
    alarm_topic_arn: z.string().regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/, 'an SNS topic ARN').optional(),
  })
  .strict()
  .prefault({});

/**
 * Secrets encrypted with a customer-managed KMS key, by the name or ARN the configuration
 * gives them: the functions and build projects that read a secret may decrypt with its key,
 * through Secrets Manager only. Secrets under `aws/secretsmanager` need no entry.
 */
export const SecretKmsKeysSchema = z
  .record(
    z.string().min(1),
    z.string().regex(KMS_KEY_ARN, 'must be a KMS key ARN, arn:aws:kms:<region>:<account>:key/<key id> (not an alias: IAM grants use of a key by its ARN)'),
  )
  .default({});

export const ApiSchema = z
  .object({
    /**
     * Set API Gateway's CloudWatch logging role for the whole account and region
     * (`AWS::ApiGateway::Account`), replacing any role set before: the stage's logs need one
     * set. `false` when the account already has one (another stack or the operator set it).
     */
    set_account_logging_role: z.boolean().default(true),
  })
  .strict()
  .prefault({});

/** What a template may set of how its versions are served (SageMaker asynchronous inference). */
export const TemplateServingSchema = z
  .object({
    /** The endpoint's instance type; new accounts have a quota of 0 "for endpoint usage" for GPU types. */
    instance_type: z.string().regex(/^ml\.[a-z0-9]+\.[a-z0-9]+$/, 'must be a SageMaker instance type, e.g. ml.g5.xlarge').optional(),
    /** Most instances an endpoint scales out to. */
    max_instances: z.number().int().min(1).max(100).optional(),
    /** Minutes without a queued request before an endpoint scales in to zero instances. */
    idle_minutes: z.number().int().min(1).max(1440).optional(),
  })
  .strict();

/** The `serving` section: each version's endpoint, made on the first prediction. */
export const ServingSchema = z
  .object({
    instance_type: z.string().regex(/^ml\.[a-z0-9]+\.[a-z0-9]+$/, 'must be a SageMaker instance type, e.g. ml.g5.xlarge').default('ml.g5.xlarge'),
    max_instances: z.number().int().min(1).max(100).default(1),
    idle_minutes: z.number().int().min(1).max(1440).default(15),
    /** Days without a prediction after which a version's endpoint is deleted (its next prediction makes it again). */
    delete_idle_days: z.number().int().min(1).max(365).default(7),
    /** Seconds one prediction may take on the endpoint (asynchronous inference allows up to 3600). */
    invocation_timeout_seconds: z.number().int().min(1).max(3600).default(3600),
    /**
     * Seconds between two looks at an endpoint being made or leaving zero (a Wait state of the
     * prediction state machine; each look is a few transitions). Local mode's endpoints start in
     * about a second, so it looks every second.
     */
    poll_seconds: z.number().int().min(1).max(300).default(30),
    /** Requests one instance works on at once; Cog predicts one at a time. */
    max_concurrent_invocations_per_instance: z.number().int().min(1).max(1000).default(1),
  })
  .strict()
  .prefault({});
