/**
 * The model build's environment (CodeBuild), one contract for everyone who touches it:
 * - stage-weights produces the per-build part (`BuildOverrides`) as its result's `build_env`;
 * - the state machine passes it as the build's environment overrides, by these keys
 *   (infra/constructs/workflow.ts);
 * - each project sets its own part from the configuration (`ProjectEnv`, `AppendLimitsEnv`:
 *   infra/constructs/build.ts);
 * - the build reads it: codebuild/build-image parses `process.env` with `BuildImageEnv`, and
 *   buildspecs/build-model.yml reads it in bash. test/infra/build-env.test.ts holds each
 *   buildspec's header and commands to this contract.
 */
import { TRAINING_ID } from './ids.ts';
import { WEIGHTS_FORMATS } from './weights-format.ts';
import * as z from './zod.ts';

const S3_URI = /^s3:\/\/[^/]+\/.+$/;

/** Set per build by the state machine, from stage-weights' result. */
export const BuildOverrides = z.object({
  TRAINING_ID: z.string().check(z.regex(TRAINING_ID)),
  /** The staged output. */
  WEIGHTS_S3_URI: z.string().check(z.regex(S3_URI, 'must be s3://bucket/key')),
  /** What stage-weights found the output to be; a single file keeps the staged key's last segment as its name. */
  WEIGHTS_FORMAT: z._default(z.enum(WEIGHTS_FORMATS), 'zip'),
  /** The template, pinned: `<repository>@sha256:<digest>`. */
  TEMPLATE_IMAGE: z.string().check(z.regex(/^[^@\s]+@sha256:[0-9a-f]{64}$/, 'must be <repository>@sha256:<64 hex>')),
  /** Where the model's image goes: `<host>/<path>`, or `oci:<layout dir>/<model>` (local mode). */
  IMAGE_REPOSITORY: z.string().check(z.regex(/^([^@:\s]+(:\d+)?\/[^@:\s]+|oci:[^@\s]+)$/, 'must be <host>/<path> (or oci:<layout dir>)')),
  IMAGE_TAG: z.string().check(z.regex(/^[\w][\w.-]{0,127}$/)),
  /**
   * The notes (the image's description label) as an S3 object, or '' for none: notes run to
   * 10,000 characters, and CodeBuild refuses a variable of more than 4,096.
   */
  NOTES_S3_URI: z._default(z.union([z.literal(''), z.string().check(z.regex(S3_URI, 'must be s3://bucket/key or empty'))]), ''),
});
/** What stage-weights hands the state machine (every value a string, as CodeBuild takes them). */
export type BuildOverrides = z.output<typeof BuildOverrides>;
export type BuildOverrideName = keyof BuildOverrides;
/** The overrides' names, in the contract's order: the state machine passes exactly these. */
export const BUILD_OVERRIDE_NAMES = Object.keys(BuildOverrides.shape) as BuildOverrideName[];

/** Set by every build project from the configured registry. */
export const ProjectEnv = z.object({
  REGISTRY_TYPE: z.enum(['ecr', 'oci']),
  /** Where images are pushed, e.g. `<account>.dkr.ecr.<region>.amazonaws.com` or `ghcr.io`. */
  REGISTRY_HOST: z.string().check(z.minLength(1)),
  /** The path between host and `<owner>/<name>`, for a reader of the project: the builds take IMAGE_REPOSITORY whole. */
  REPOSITORY_PREFIX: z.optional(z.string()),
  /** An oci registry's credentials, resolved by CodeBuild from Secrets Manager at build start. */
  REGISTRY_USERNAME: z.optional(z.string()),
  REGISTRY_PASSWORD: z.optional(z.string()),
});
export type ProjectEnv = z.output<typeof ProjectEnv>;

/** Set by the append projects only: the archive limits, checked on the bytes the build reads. */
export const AppendLimitsEnv = z.object({
  ARCHIVE_MAX_ENTRIES: z._default(z.pipe(z.coerce.number(), z.int().check(z.positive())), 10_000),
  ARCHIVE_MAX_UNCOMPRESSED_BYTES: z._default(z.pipe(z.coerce.number(), z.int().check(z.positive())), 20 * 1024 ** 3),
});

/** What the append build (codebuild/build-image) reads of its environment, the registry's part aside. */
export const BuildImageEnv = z.extend(BuildOverrides, AppendLimitsEnv.shape);
export type BuildImageEnv = z.output<typeof BuildImageEnv>;

/**
 * What a build exports (its buildspec's `exported-variables`; the state machine selects them):
 * the version's digest (64 hex), its image (`repo@sha256:…`) and its SageMaker variant
 * (`repo@sha256:…`, tag `<digest>-sagemaker`: lambdas/shared/oci/serving-variant.ts).
 */
export const BUILD_EXPORTS = ['IMAGE_DIGEST', 'IMAGE_URI', 'IMAGE_SERVING_URI'] as const;

/** Each buildspec's environment: the overrides and what its projects set. */
export const BUILDSPEC_ENV: Record<'build-model' | 'append-model', readonly string[]> = {
  'build-model': [...BUILD_OVERRIDE_NAMES, ...Object.keys(ProjectEnv.shape)],
  'append-model': [...BUILD_OVERRIDE_NAMES, ...Object.keys(ProjectEnv.shape), ...Object.keys(AppendLimitsEnv.shape)],
};
