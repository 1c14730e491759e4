/**
 * Training on the user's own GPUs: one SageMaker training job per training, running the
 * trainer's Cog image unchanged with the runner (runner/dreambooth_runner.py) as its
 * entrypoint. The train step is a `createTrainingJob.sync` CustomState in JSONPath, because
 * CDK's SageMakerCreateTrainingJob cannot set ContainerEntrypoint, spot, checkpoints or
 * CompressionType; its IAM is therefore written here by hand, as CDK's task would, but scoped
 * to this stack's job-name prefix.
 */
import { ArnFormat, Aws, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Repository, TagMutability } from 'aws-cdk-lib/aws-ecr';
import { type IGrantable, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import {
  Choice,
  Condition,
  CustomState,
  Errors,
  JitterType,
  JsonPath,
  type State,
  TaskInput,
  Timeout,
  Wait,
  WaitTime,
} from 'aws-cdk-lib/aws-stepfunctions';
import { BuildEnvironmentVariableType, BuildSpec, ComputeType, LinuxBuildImage, Project, Source } from 'aws-cdk-lib/aws-codebuild';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Asset } from 'aws-cdk-lib/aws-s3-assets';
import { AssetHashType, DockerImage } from 'aws-cdk-lib';
import { CallAwsService, CodeBuildStartBuild, LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { IntegrationPattern } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { CALLBACK_URL_ENV, CHECKPOINT_LOCAL_PATH, CONTAINER_ENTRYPOINT, REQUEST_CHANNEL, SAGEMAKER_TASK_ERRORS, SAGEMAKER_PREFIX, sagemakerTrainers } from '#shared/trainers/sagemaker/training-jobs';
import { bundleBuildImage, loadBuildSpec } from './build.ts';
import { HouseFunction, REPO_ROOT } from './function.ts';
import { configuredSecret } from './secrets.ts';
import type { Storage } from './storage.ts';
import { BUILD_QUOTA_RETRY, TRANSIENT_RETRY } from './retries.ts';

export interface SageMakerTrainingProps {
  readonly config: Config;
  readonly storage: Storage;
  /** Where a failure goes (the Catch writes `$.error`). */
  readonly onError: State;
  /** The step after a finished job ("Stage the weights in S3"), reading `$.trainer.output_url`. */
  readonly then: State;
  /** Where trainings of other backends go, and re-templates (their run is over). */
  readonly otherwise: State;
}


/**
 * Failure reasons SageMaker gives when it found no instance (retried with a new job). A job that
 * fails ends `createTrainingJob.sync` with `States.TaskFailed` and the job's description as the
 * Cause, so these match its FailureReason inside that JSON ("CapacityError: Unable to provision
 * requested ML compute capacity…", which the SageMaker Python SDK also tests for).
 */
const CAPACITY_PATTERNS = ['*CapacityError*', '*InsufficientCapacity*'];

export class SageMakerTraining extends Construct {
  /** The state the workflow enters once the training holds a trainer slot. */
  readonly start: State;
  readonly prepare: HouseFunction;
  /** The role every job runs with. */
  readonly jobRole: Role;
  readonly repositories: Repository[];
  /** Each sagemaker trainer's mirror repository name, by trainer (the prepare step builds the job's image URI from it). */
  readonly mirrorRepositoryNames: Record<string, string>;
  /** Job names start with it; the state machine's SageMaker rights are scoped to it. */
  readonly jobPrefix: string;
  readonly jobTask: CustomState;
  private readonly bucketArnForObjects: (pattern: string) => string;
  /** Copies trainer images into ECR (CodeBuild EC2 compute: images are many gigabytes). */
  readonly mirrorProject: Project;

  constructor(scope: Construct, id: string, props: SageMakerTrainingProps) {
    super(scope, id);
    const { config, storage } = props;
    // Short and stable per stack: 63 characters must hold it, a training id and an attempt.
    this.jobPrefix = `db-${this.node.addr.slice(0, 8)}-`;
    // CloudFormation names each mirror (a fixed name collides with another stack's, or with the
    // repository a destroyed stack left behind), and it goes with the stack: it holds only
    // copies of the configured images, which the mirror step copies again on demand.
    this.repositories = sagemakerTrainers(config).map(
      ([name]) =>
        new Repository(this, `Mirror-${name}`, {
          imageTagMutability: TagMutability.IMMUTABLE,
          imageScanOnPush: true,
          removalPolicy: RemovalPolicy.DESTROY,
          emptyOnDelete: true,
        }),
    );
    this.mirrorRepositoryNames = Object.fromEntries(sagemakerTrainers(config).map(([name], i) => [name, this.repositories[i]!.repositoryName]));
    this.bucketArnForObjects = (pattern) => storage.bucket.arnForObjects(pattern);
    this.jobRole = this.createJobRole(storage);
    this.mirrorProject = this.createMirrorProject(config);
    this.prepare = this.createPrepare(props);

    const prepare = (name: string, retry: boolean) =>
      new LambdaInvoke(this, name, {
        lambdaFunction: this.prepare,
        payload: TaskInput.fromObject({ training_id: JsonPath.stringAt('$.training_id'), retry }),
        payloadResponseOnly: true,
        retryOnServiceExceptions: false,
        resultPath: '$.job',
        // Input files stream through it into the request channel.
        taskTimeout: Timeout.duration(Duration.seconds(900)),
      })
        .addRetry(TRANSIENT_RETRY)
        .addCatch(props.onError, { errors: [Errors.ALL], resultPath: '$.error' });

    this.jobTask = this.createJobTask(config);
    const again = prepare('Prepare the SageMaker job again', true);
    const waitForCapacity = new Wait(this, 'Wait for SageMaker capacity', { time: WaitTime.secondsPath('$.job.retry_wait_seconds') });
    // A caught error need not carry a Cause: without the guard, matching an absent field fails
    // the execution with States.Runtime instead of recording the failure.
    const noCapacity = new Choice(this, 'Did SageMaker lack capacity?')
      .when(
        Condition.and(
          Condition.isPresent('$.error.Cause'),
          Condition.isString('$.error.Cause'),
          Condition.or(...CAPACITY_PATTERNS.map((p) => Condition.stringMatches('$.error.Cause', p))),
        ),
        waitForCapacity,
      )
      .otherwise(props.onError);
    waitForCapacity.next(again);
    again.next(this.jobTask);
    this.jobTask.addCatch(noCapacity, { errors: [Errors.ALL], resultPath: '$.error' });
    this.jobTask.next(props.then);

    const first = prepare('Prepare the SageMaker job', false);
    first.next(this.jobTask);
    // A re-template's run is over (its weights are staged): no job, on to the finished run's output.
    const choice = new Choice(this, 'Does a SageMaker job train the model?').when(Condition.isPresent('$.retemplate_of'), props.otherwise);
    sagemakerTrainers(config).forEach(([name, trainer], i) => {
      const mirror = this.mirrorStep(name, trainer.image, this.repositories[i]!, trainer.source_credentials_secret, props.onError);
      mirror.next(first);
      choice.when(Condition.stringEquals('$.trainer', name), this.presenceCheck(name, trainer.image, this.repositories[i]!, mirror).next(first));
    });
    this.start = choice.otherwise(props.otherwise);
  }

  /**
   * DescribeImages of the configured digest in the trainer's ECR repository: once the image is
   * there, no training waits for a CodeBuild machine to start only to find it. Any failure of
   * the check (the image missing, or anything else) goes to the mirror, which checks again and
   * copies what is missing: the check saves minutes and can never fail a training.
   */
  private presenceCheck(name: string, image: string, repository: Repository, mirror: State) {
    return new CallAwsService(this, `Is the ${name} image in ECR?`, {
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
  private mirrorStep(name: string, image: string, repository: Repository, secret: string | undefined, onError: State) {
    const plain = (value: string) => ({ type: BuildEnvironmentVariableType.PLAINTEXT, value });
    const fromSecret = (key: string) => ({ type: BuildEnvironmentVariableType.SECRETS_MANAGER, value: `${secret}:${key}` });
    return new CodeBuildStartBuild(this, `Copy the ${name} image into ECR`, {
      project: this.mirrorProject,
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

  private createMirrorProject(config: Config): Project {
    const script = new Asset(this, 'MirrorScript', {
      path: `${REPO_ROOT}lambdas/mirror-image`,
      assetHashType: AssetHashType.OUTPUT,
      bundling: {
        // Never used: the local esbuild always bundles.
        image: DockerImage.fromRegistry('public.ecr.aws/docker/library/node:20-slim'),
        local: { tryBundle: (outDir) => Boolean(bundleBuildImage(outDir, 'lambdas/mirror-image/main.ts', 'mirror-image.mjs')) },
      },
    });
    const project = new Project(this, 'MirrorProject', {
      description: "dreambooth-api: copies a sagemaker trainer's image into ECR by digest (blob to blob).",
      source: Source.s3({ bucket: script.bucket, path: script.s3ObjectKey }),
      buildSpec: BuildSpec.fromObjectToYaml(loadBuildSpec('mirror-image')),
      // Streams blob to blob: neither memory nor disk, but EC2 compute has no 15-minute cap.
      environment: { buildImage: LinuxBuildImage.STANDARD_7_0, computeType: ComputeType.SMALL, privileged: false },
      timeout: Duration.minutes(90),
      queuedTimeout: Duration.hours(1),
      logging: { cloudWatch: { logGroup: new LogGroup(this, 'MirrorLogs', { retention: RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY }) } },
    });
    for (const repository of this.repositories) repository.grantPullPush(project);
    for (const [name, trainer] of sagemakerTrainers(config)) {
      if (trainer.source_credentials_secret) configuredSecret(this, `Source-${name}`, config, trainer.source_credentials_secret).grantRead(project);
    }
    return project;
  }

  /**
   * What the state machine needs for `createTrainingJob.sync`: the job calls on this stack's
   * job names only, passing the job role to SageMaker only, and the managed EventBridge rule
   * through which Step Functions learns that a job ended.
   */
  grantRun(grantee: IGrantable): void {
    const stack = Stack.of(this);
    const jobs = stack.formatArn({ service: 'sagemaker', resource: 'training-job', resourceName: `${this.jobPrefix}*` });
    const add = (s: PolicyStatement) => grantee.grantPrincipal.addToPrincipalPolicy(s);
    // ListTags: the `.sync` integration's documented policy ("IAM policies for calling Amazon
    // SageMaker AI", CreateTrainingJob, Run a Job) names it beside the job calls.
    add(
      new PolicyStatement({
        actions: ['sagemaker:CreateTrainingJob', 'sagemaker:DescribeTrainingJob', 'sagemaker:StopTrainingJob', 'sagemaker:ListTags'],
        resources: [jobs],
      }),
    );
    add(
      new PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [this.jobRole.roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } },
      }),
    );
    add(
      new PolicyStatement({
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [stack.formatArn({ service: 'events', resource: 'rule', resourceName: 'StepFunctionsGetEventsForSageMakerTrainingJobsRule' })],
      }),
    );
  }

  private createJobTask(config: Config): CustomState {
    const trainers = sagemakerTrainers(config).map(([, t]) => t);
    // The job's own limits end it; the task's timeout is only a backstop (provisioning, image download).
    const longest = Math.max(...trainers.map((t) => t.max_runtime_seconds + (t.spot ? t.max_wait_seconds! : 0)));
    const task = new CustomState(this, 'Train the model on SageMaker', {
      stateJson: {
        Type: 'Task',
        Resource: `arn:${Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync`,
        Parameters: {
          'TrainingJobName.$': '$.job.name',
          RoleArn: this.jobRole.roleArn,
          AlgorithmSpecification: {
            'TrainingImage.$': '$.job.image',
            TrainingInputMode: 'File',
            ContainerEntrypoint: CONTAINER_ENTRYPOINT,
          },
          InputDataConfig: [
            {
              ChannelName: REQUEST_CHANNEL,
              DataSource: { S3DataSource: { S3DataType: 'S3Prefix', 'S3Uri.$': '$.job.request_uri', S3DataDistributionType: 'FullyReplicated' } },
            },
          ],
          OutputDataConfig: { 'S3OutputPath.$': '$.job.output_uri', CompressionType: 'NONE' },
          'ResourceConfig.$': '$.job.resource_config',
          'StoppingCondition.$': '$.job.stopping_condition',
          'EnableManagedSpotTraining.$': '$.job.spot',
          // Only this job's container sees its environment; every job can read every request channel.
          Environment: { [`${CALLBACK_URL_ENV}.$`]: '$.job.callback_url' },
          CheckpointConfig: { 'S3Uri.$': '$.job.checkpoint_uri', LocalPath: CHECKPOINT_LOCAL_PATH },
        },
        // The same shape as a trainer callback's result, so "Stage the weights in S3" reads one path.
        ResultSelector: {
          status: 'succeeded',
          'output_url.$': '$.ModelArtifacts.S3ModelArtifacts',
          'predict_time.$': '$.TrainingTimeInSeconds',
        },
        ResultPath: '$.trainer',
        TimeoutSeconds: longest + 3 * 3600,
      },
    });
    // Only refusals of the create call itself, throttling among them (a validation error is
    // retried too, harmlessly: it fails again); the quota is not retried, it will not rise by
    // itself. A failed job is never retried by this rule (a new job needs a new name: see "Did
    // SageMaker lack capacity?").
    task.addRetry({
      errors: [SAGEMAKER_TASK_ERRORS.refused],
      interval: Duration.seconds(5),
      backoffRate: 2,
      maxAttempts: 4,
      maxDelay: Duration.seconds(60),
      jitterStrategy: JitterType.FULL,
    });
    return task;
  }

  /** Reading the jobs' output archives: stage-weights checks them and the build reads them in place. */
  grantReadOutputs(grantee: IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(new PolicyStatement({ actions: ['s3:GetObject'], resources: [this.outputObjects] }));
  }

  private get outputObjects(): string {
    return this.bucketArnForObjects(`${SAGEMAKER_PREFIX}*/output/*`);
  }

  /** Reads its request channel, writes its output and checkpoints, pulls its images, writes its logs. */
  private createJobRole(storage: Storage): Role {
    const role = new Role(this, 'JobRole', {
      assumedBy: new ServicePrincipal('sagemaker.amazonaws.com'),
      description: 'dreambooth-api: the role of each SageMaker training job (one per training).',
    });
    const objects = (path: string) => storage.bucket.arnForObjects(`${SAGEMAKER_PREFIX}*/${path}/*`);
    role.addToPolicy(new PolicyStatement({ actions: ['s3:GetObject'], resources: [objects(REQUEST_CHANNEL), objects('checkpoints')] }));
    role.addToPolicy(new PolicyStatement({ actions: ['s3:PutObject', 's3:AbortMultipartUpload'], resources: [objects('output'), objects('checkpoints')] }));
    role.addToPolicy(
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [storage.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${SAGEMAKER_PREFIX}*`] } },
      }),
    );
    for (const repository of this.repositories) repository.grantPull(role);
    const stack = Stack.of(this);
    const logGroup = stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: '/aws/sagemaker/TrainingJobs', arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    role.addToPolicy(new PolicyStatement({ actions: ['logs:CreateLogGroup', 'logs:DescribeLogStreams'], resources: [logGroup] }));
    role.addToPolicy(new PolicyStatement({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [`${logGroup}:log-stream:${this.jobPrefix}*`] }));
    role.addToPolicy(
      new PolicyStatement({
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringLike: { 'cloudwatch:namespace': '/aws/sagemaker/*' } },
      }),
    );
    return role;
  }

  /** Its environment and grants are declared in infra/functions.ts. */
  private createPrepare(props: SageMakerTrainingProps): HouseFunction {
    return new HouseFunction(this, 'Prepare', { name: 'prepare-training-job', config: props.config });
  }

}
