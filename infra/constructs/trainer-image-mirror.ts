/**
 * Each sagemaker trainer's image copied into ECR, where a training job pulls it: one ECR
 * repository per trainer, a CodeBuild project that copies blob to blob
 * (codebuild/mirror-image), and the states that check for the image and copy it when missing.
 */
import { Aws, AssetHashType, DockerImage, Duration, RemovalPolicy } from 'aws-cdk-lib';
import { BuildEnvironmentVariableType, BuildSpec, ComputeType, LinuxBuildImage, Project, Source } from 'aws-cdk-lib/aws-codebuild';
import { Repository, TagMutability } from 'aws-cdk-lib/aws-ecr';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Asset } from 'aws-cdk-lib/aws-s3-assets';
import { Errors, IntegrationPattern, JsonPath, type State, Timeout } from 'aws-cdk-lib/aws-stepfunctions';
import { CallAwsService, CodeBuildStartBuild } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import type { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { sagemakerTrainers } from '#shared/trainers/sagemaker/training-jobs';
import { bundleBuildImage, loadBuildSpec } from './build.ts';
import { REPO_ROOT } from './function.ts';
import { BUILD_QUOTA_RETRY } from './retries.ts';
import { configuredSecret } from './secrets.ts';

/**
 * One repository per sagemaker trainer. CloudFormation names each (a fixed name collides with
 * another stack's, or with the repository a destroyed stack left behind), and it goes with the
 * stack: it holds only copies of the configured images, which the mirror copies again on demand.
 */
export function mirrorRepositories(scope: Construct, config: Config): Repository[] {
  return sagemakerTrainers(config).map(
    ([name]) =>
      new Repository(scope, `Mirror-${name}`, {
        imageTagMutability: TagMutability.IMMUTABLE,
        imageScanOnPush: true,
        removalPolicy: RemovalPolicy.DESTROY,
        emptyOnDelete: true,
      }),
  );
}

/** codebuild/mirror-image bundled at synth time into mirror-image.mjs, with the serving adapter beside it. */
export function mirrorScriptAsset(scope: Construct, id: string): Asset {
  return new Asset(scope, id, {
    path: `${REPO_ROOT}codebuild/mirror-image`,
    assetHashType: AssetHashType.OUTPUT,
    bundling: {
      // Never used: the local esbuild always bundles.
      image: DockerImage.fromRegistry('public.ecr.aws/docker/library/node:20-slim'),
      local: { tryBundle: (outDir) => Boolean(bundleBuildImage(outDir, 'codebuild/mirror-image/main.ts', 'mirror-image.mjs')) },
    },
  });
}

/** Copies trainer images into ECR (CodeBuild EC2 compute: images are many gigabytes). */
export function createMirrorProject(scope: Construct, config: Config, repositories: Repository[]): Project {
  const script = mirrorScriptAsset(scope, 'MirrorScript');
  const project = new Project(scope, 'MirrorProject', {
    description: "dreambooth-api: copies a sagemaker trainer's image into ECR by digest (blob to blob).",
    source: Source.s3({ bucket: script.bucket, path: script.s3ObjectKey }),
    buildSpec: BuildSpec.fromObjectToYaml(loadBuildSpec('mirror-image')),
    // Streams blob to blob: neither memory nor disk, but EC2 compute has no 15-minute cap.
    environment: { buildImage: LinuxBuildImage.STANDARD_7_0, computeType: ComputeType.SMALL, privileged: false },
    timeout: Duration.minutes(90),
    queuedTimeout: Duration.hours(1),
    logging: { cloudWatch: { logGroup: new LogGroup(scope, 'MirrorLogs', { retention: RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY }) } },
  });
  for (const repository of repositories) repository.grantPullPush(project);
  for (const [name, trainer] of sagemakerTrainers(config)) {
    if (trainer.source_credentials_secret) configuredSecret(scope, `Source-${name}`, config, trainer.source_credentials_secret).grantRead(project);
  }
  return project;
}

export interface ImageInEcrProps {
  readonly project: Project;
  /** The trainer's name in the configuration. */
  readonly name: string;
  /** `<registry>/<repo>@sha256:…`, as configured. */
  readonly image: string;
  /** The trainer's `source_credentials_secret`, for a private source registry. */
  readonly secret?: string;
  readonly repository: Repository;
  readonly onError: State;
  /** Where the training goes once the image is in ECR. */
  readonly then: State;
}

/**
 * The trainer's image in ECR, then on to `then`: the states enter at the presence check, which
 * goes to the mirror on any failure.
 */
export function imageInEcr(scope: Construct, props: ImageInEcrProps): State {
  const mirror = mirrorStep(scope, props);
  mirror.next(props.then);
  const check = presenceCheck(scope, props, mirror);
  check.next(props.then);
  return check;
}

/**
 * DescribeImages of the configured digest in the trainer's ECR repository: once the image is
 * there, no training waits for a CodeBuild machine to start only to find it. Any failure of
 * the check (the image missing, or anything else) goes to the mirror, which checks again and
 * copies what is missing: the check saves minutes and can never fail a training.
 */
function presenceCheck(scope: Construct, { name, image, repository }: ImageInEcrProps, mirror: State) {
  return new CallAwsService(scope, `Is the ${name} image in ECR?`, {
    service: 'ecr',
    action: 'describeImages',
    iamAction: 'ecr:DescribeImages',
    iamResources: [repository.repositoryArn],
    parameters: { RepositoryName: repository.repositoryName, ImageIds: [{ ImageDigest: image.slice(image.lastIndexOf('@') + 1) }] },
    resultPath: JsonPath.DISCARD,
    taskTimeout: Timeout.duration(Duration.seconds(60)),
  }).addCatch(mirror, { errors: [Errors.ALL], resultPath: JsonPath.DISCARD });
}

/** startBuild.sync of the mirror for one trainer's image; skipped inside when ECR has it. */
function mirrorStep(scope: Construct, { project, name, image, secret, repository, onError }: ImageInEcrProps) {
  const plain = (value: string) => ({ type: BuildEnvironmentVariableType.PLAINTEXT, value });
  const fromSecret = (key: string) => ({ type: BuildEnvironmentVariableType.SECRETS_MANAGER, value: `${secret}:${key}` });
  return new CodeBuildStartBuild(scope, `Copy the ${name} image into ECR`, {
    project,
    integrationPattern: IntegrationPattern.RUN_JOB,
    environmentVariablesOverride: {
      SOURCE_IMAGE: plain(image),
      TARGET_REPOSITORY: plain(`${Aws.ACCOUNT_ID}.dkr.ecr.${Aws.REGION}.${Aws.URL_SUFFIX}/${repository.repositoryName}`),
      ...(secret ? { SOURCE_USERNAME: fromSecret('username'), SOURCE_PASSWORD: fromSecret('password') } : {}),
    },
    resultPath: JsonPath.DISCARD,
    taskTimeout: Timeout.duration(Duration.minutes(90)),
  })
    .addRetry(BUILD_QUOTA_RETRY)
    .addCatch(onError, { errors: [Errors.ALL], resultPath: '$.error' });
}
