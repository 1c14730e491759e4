/**
 * The image build, one of two strategies (configuration `build.strategy`):
 * - `append` (default): buildspecs/append-model.yml runs codebuild/build-image (bundled here with
 *   the local esbuild into an S3 asset, the project's source) with no Docker daemon and no
 *   privileged mode: the template's layers are mounted or copied registry-side and the weights
 *   streamed from S3 into one new layer. Two projects: Lambda compute (starts in seconds, no
 *   queue, at most 15 minutes) for archives up to `build.lambda_compute_max_bytes`, and EC2
 *   compute beyond; the state machine chooses on the staged size.
 * - `docker`: buildspecs/build-model.yml (docker build + docker push) in a privileged project,
 *   whose source is the serving adapter.
 * Both then push the version's SageMaker variant (lambdas/shared/oci/serving-variant.ts).
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Annotations, AssetHashType, Aws, DockerImage, Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import {
  type BuildEnvironmentVariable,
  BuildEnvironmentVariableType,
  BuildSpec,
  ComputeType,
  type IBuildImage,
  LinuxArmLambdaBuildImage,
  LinuxBuildImage,
  Project,
  Source,
} from 'aws-cdk-lib/aws-codebuild';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Asset } from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';
import { type BuildOptions, buildSync } from 'esbuild';
import { parse } from 'yaml';
import type { AppendLimitsEnv, ProjectEnv } from '#shared/build-env';
import type { Config } from '#shared/config';
import { SERVING_ADAPTER } from '#shared/oci/serving-variant';
import { REPO_ROOT } from './function.ts';
import { configuredSecret } from './secrets.ts';
import { PREFIX, type Storage } from './storage.ts';

export interface ModelBuildProps {
  readonly config: Config;
  readonly storage: Storage;
}

/** Push and pull actions on the model repositories; creation because repositories appear per model. */
export const ECR_REPOSITORY_ACTIONS = [
  'ecr:DescribeRepositories',
  'ecr:CreateRepository',
  'ecr:BatchCheckLayerAvailability',
  'ecr:BatchGetImage',
  'ecr:GetDownloadUrlForLayer',
  'ecr:InitiateLayerUpload',
  'ecr:UploadLayerPart',
  'ecr:CompleteLayerUpload',
  'ecr:PutImage',
];

/**
 * The build's timeouts, in one place: CodeBuild's for the build, CodeBuild's for its wait in the
 * queue (set here: CodeBuild's default is 8 hours), and the state machine's for the build step,
 * which must outlast both, or a build that queued a while is failed by the state machine while
 * CodeBuild still runs it. The margin covers CodeBuild's provisioning and finalizing.
 */
export function buildTimeouts(config: Config): { build: Duration; queued: Duration; task: Duration } {
  const { build_minutes, build_queued_minutes } = config.timeouts;
  return {
    build: Duration.minutes(build_minutes),
    queued: Duration.minutes(build_queued_minutes),
    task: Duration.minutes(build_minutes + build_queued_minutes + BUILD_TASK_MARGIN_MINUTES),
  };
}
const BUILD_TASK_MARGIN_MINUTES = 10;

/** The name of the bundled script in the append project's source (the buildspec runs it). */
export const BUILD_IMAGE_SCRIPT = 'build-image.mjs';

/** A repository buildspec, embedded so that the deployed spec is the one the tests run. */
export function loadBuildSpec(name: 'build-model' | 'append-model' | 'mirror-image' = 'build-model'): Record<string, unknown> {
  return parse(readFileSync(`${REPO_ROOT}buildspecs/${name}.yml`, 'utf8')) as Record<string, unknown>;
}

/**
 * Bundles codebuild/build-image into `<outDir>/build-image.mjs`: one file, every dependency (the
 * SDK clients too) inside, since CodeBuild images carry no node_modules. Node 18 is the oldest
 * Node of the images it runs on. The serving adapter goes beside it: the build appends it to
 * every version as its SageMaker variant.
 */
export function bundleBuildImage(outDir: string, entry = 'codebuild/build-image/main.ts', name = BUILD_IMAGE_SCRIPT): string {
  buildSync(buildImageOptions(outDir, entry, name));
  return join(outDir, name);
}

/** bundleBuildImage's esbuild options (the serving adapter copied beside), for an asynchronous build of the same bundle. */
export function buildImageOptions(outDir: string, entry: string, name: string): BuildOptions {
  copyServingAdapter(outDir);
  return {
    entryPoints: [`${REPO_ROOT}${entry}`],
    absWorkingDir: REPO_ROOT,
    outfile: join(outDir, name),
    bundle: true, platform: 'node', format: 'esm', target: 'node18',
    minify: true, legalComments: 'none', logLevel: 'error',
    // Bundled CommonJS dependencies call require(); ESM output needs it defined.
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  };
}

/** serving/sagemaker_adapter.py into `outDir`, where both builds find it (the docker build's context too). */
export function copyServingAdapter(outDir: string): string {
  mkdirSync(outDir, { recursive: true });
  const to = join(outDir, SERVING_ADAPTER);
  copyFileSync(`${REPO_ROOT}serving/${SERVING_ADAPTER}`, to);
  return to;
}

/**
 * Regions where CodeBuild offers Lambda compute (CodeBuild User Guide, "Lambda compute":
 * N. Virginia, Ohio, Oregon, Mumbai, Singapore, Sydney, Tokyo, Frankfurt, Ireland, São Paulo).
 */
export const LAMBDA_COMPUTE_REGIONS: readonly string[] = [
  ...['us-east-1', 'us-east-2', 'us-west-2', 'ap-south-1', 'ap-southeast-1', 'ap-southeast-2'],
  ...['ap-northeast-1', 'eu-central-1', 'eu-west-1', 'sa-east-1'],
];

/**
 * Elsewhere the Lambda project would not deploy, so a stack synthesized for another region
 * builds everything on EC2 compute. An environment-agnostic stack (no region at synth: bin/app.ts
 * takes the CLI's CDK_DEFAULT_REGION) keeps both and says so.
 */
function lambdaComputeOffered(scope: Construct): boolean {
  const region = Stack.of(scope).region;
  if (Token.isUnresolved(region)) {
    Annotations.of(scope).addInfo(`Lambda compute builds need one of ${LAMBDA_COMPUTE_REGIONS.join(', ')}; synthesize with a region to build on EC2 compute elsewhere.`);
    return true;
  }
  return LAMBDA_COMPUTE_REGIONS.includes(region);
}

export class ModelBuild extends Construct {
  readonly strategy: Config['build']['strategy'];
  /** EC2 compute: the docker build, or the append build of archives too large for Lambda compute. */
  readonly project: Project;
  /** Lambda compute, `append` only: archives up to `lambdaComputeMaxBytes`. */
  readonly lambdaProject?: Project;
  readonly lambdaComputeMaxBytes: number;
  /** Both projects log here (the record step reads a failed build's tail). */
  readonly logGroup: LogGroup;
  /** Host images are pushed to, e.g. `<account>.dkr.ecr.<region>.amazonaws.com` or `ghcr.io`. */
  readonly registryHost: string;
  /** Path between host and `<owner>/<name>`; may be empty. */
  readonly repositoryPrefix: string;

  constructor(scope: Construct, id: string, props: ModelBuildProps) {
    super(scope, id);
    const { config, storage } = props;
    this.strategy = config.build.strategy;
    this.lambdaComputeMaxBytes = config.build.lambda_compute_max_bytes;
    const registry = config.registry;
    if (registry.type === 'ecr') {
      this.registryHost = `${Aws.ACCOUNT_ID}.dkr.ecr.${Aws.REGION}.${Aws.URL_SUFFIX}`;
      this.repositoryPrefix = registry.repository_prefix.replace(/\/+$/, '');
    } else if (registry.type === 'oci') {
      const [host, ...path] = registry.host.split('/');
      this.registryHost = host;
      this.repositoryPrefix = path.join('/');
    } else {
      // An image layout on disk exists only in local mode; there is no registry to name.
      this.registryHost = '';
      this.repositoryPrefix = '';
    }

    this.logGroup = new LogGroup(this, 'Logs', {
      retention: RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    if (this.strategy === 'docker') {
      this.project = this.dockerProject(config);
    } else {
      const script = this.scriptAsset();
      this.project = this.appendProject('Project', config, script, {
        buildImage: LinuxBuildImage.STANDARD_7_0,
        // Streaming needs neither memory nor disk.
        computeType: ComputeType.SMALL,
      });
      if (lambdaComputeOffered(this)) this.lambdaProject = this.appendProject('LambdaProject', config, script, {
        buildImage: LinuxArmLambdaBuildImage.AMAZON_LINUX_2023_NODE_22,
        // Lambda compute's CPU grows with memory: 2 GB hashes and sends at line rate.
        computeType: ComputeType.LAMBDA_2GB,
      });
    }
    for (const project of this.projects) {
      storage.grantObjects(project, PREFIX.staged, ['s3:GetObject']);
      if (registry.type === 'ecr') this.grantEcr(project);
    }
    // The SECRETS_MANAGER variables bring CDK's GetSecretValue grant, not the secret's KMS key.
    if (registry.type === 'oci' && config.secret_kms_keys[registry.credentials_secret]) {
      const credentials = configuredSecret(this, 'RegistryCredentials', config, registry.credentials_secret);
      for (const project of this.projects) credentials.grantRead(project);
    }
  }

  /** Every project of this build (the API stops their builds, nag reviews them). */
  get projects(): Project[] {
    return this.lambdaProject ? [this.project, this.lambdaProject] : [this.project];
  }

  private dockerProject(config: Config): Project {
    const adapter = this.sourceAsset('Adapter', (outDir) => Boolean(copyServingAdapter(outDir)));
    return new Project(this, 'Project', {
      description: 'dreambooth-api: bakes trained weights into a template image and pushes the model version (docker).',
      // The serving adapter, which the buildspec appends to the version as its SageMaker variant.
      source: Source.s3({ bucket: adapter.bucket, path: adapter.s3ObjectKey }),
      buildSpec: BuildSpec.fromObjectToYaml(loadBuildSpec('build-model')),
      environment: {
        buildImage: LinuxBuildImage.STANDARD_7_0,
        // Weights are gigabytes: more disk and bandwidth than SMALL.
        computeType: ComputeType.MEDIUM,
        // docker build needs the Docker daemon.
        privileged: true,
      },
      environmentVariables: this.registryEnvironment(config),
      timeout: buildTimeouts(config).build,
      queuedTimeout: buildTimeouts(config).queued,
      logging: { cloudWatch: { logGroup: this.logGroup } },
    });
  }

  private appendProject(id: string, config: Config, script: Asset, env: { buildImage: IBuildImage; computeType: ComputeType }): Project {
    const lambda = env.computeType.startsWith('BUILD_LAMBDA');
    return new Project(this, id, {
      description: `dreambooth-api: appends the trained weights to a template image and pushes the model version (${lambda ? 'Lambda' : 'EC2'} compute).`,
      source: Source.s3({ bucket: script.bucket, path: script.s3ObjectKey }),
      buildSpec: BuildSpec.fromObjectToYaml(loadBuildSpec('append-model')),
      environment: { ...env, privileged: false },
      environmentVariables: { ...this.registryEnvironment(config), ...appendLimits(config) },
      // Lambda compute takes no timeouts of its own: it ends builds at 15 minutes, and does not queue.
      ...(lambda ? {} : { timeout: buildTimeouts(config).build, queuedTimeout: buildTimeouts(config).queued }),
      logging: { cloudWatch: { logGroup: this.logGroup } },
    });
  }

  /** codebuild/build-image bundled at synth time (skipped, like the functions', when a stack is not bundled). */
  private scriptAsset(): Asset {
    return this.sourceAsset('Script', (outDir) => Boolean(bundleBuildImage(outDir)));
  }

  /** A project's source, made at synth time by `make` into its output folder. */
  private sourceAsset(id: string, make: (outDir: string) => boolean): Asset {
    return new Asset(this, id, {
      path: `${REPO_ROOT}codebuild/build-image`,
      // The bundle also holds lambdas/shared and serving/: hash what is shipped, not the entry folder.
      assetHashType: AssetHashType.OUTPUT,
      bundling: {
        // Never used: the local esbuild always bundles (Docker is not needed to deploy).
        image: DockerImage.fromRegistry('public.ecr.aws/docker/library/node:20-slim'),
        local: { tryBundle: make },
      },
    });
  }

  /** The project's part of the build environment (lambdas/shared/build-env.ts). */
  private registryEnvironment(config: Config): ProjectVariables<typeof ProjectEnv> {
    const env = {
      REGISTRY_TYPE: plain(config.registry.type),
      REGISTRY_HOST: plain(this.registryHost),
      REPOSITORY_PREFIX: plain(this.repositoryPrefix),
    } satisfies ProjectVariables<typeof ProjectEnv>;
    if (config.registry.type !== 'oci') return env;
    // Resolved by CodeBuild at build start (which also grants the read): never in the template,
    // the spec or the logs.
    const secret = config.registry.credentials_secret;
    const fromSecret = (key: string) => ({ type: BuildEnvironmentVariableType.SECRETS_MANAGER, value: `${secret}:${key}` });
    return { ...env, REGISTRY_USERNAME: fromSecret('username'), REGISTRY_PASSWORD: fromSecret('password') };
  }

  private grantEcr(project: Project): void {
    const stack = Stack.of(this);
    const repositories = stack.formatArn({
      service: 'ecr',
      resource: 'repository',
      resourceName: `${this.repositoryPrefix}/*`,
    });
    project.addToRolePolicy(new PolicyStatement({ actions: ECR_REPOSITORY_ACTIONS, resources: [repositories] }));
    // GetAuthorizationToken is account-wide: it takes no resource.
    project.addToRolePolicy(new PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }));
  }
}

const plain = (value: string) => ({ type: BuildEnvironmentVariableType.PLAINTEXT, value });

/** Project variables named by the build environment's contract: a name outside it does not compile. */
type ProjectVariables<S extends { shape: object }> = { [K in keyof S['shape']]?: BuildEnvironmentVariable };

/** The append projects' part: the archive limits the build checks on the bytes it reads. */
function appendLimits(config: Config): ProjectVariables<typeof AppendLimitsEnv> {
  return {
    ARCHIVE_MAX_ENTRIES: plain(String(config.limits.archive_max_entries)),
    ARCHIVE_MAX_UNCOMPRESSED_BYTES: plain(String(config.limits.archive_max_uncompressed_bytes)),
  };
}
