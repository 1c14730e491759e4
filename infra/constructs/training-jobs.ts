/**
 * Training on the user's own GPUs: one SageMaker training job per training, running the
 * trainer's Cog image unchanged with the runner (runner/dreambooth_runner.py) as its
 * entrypoint. The train step is a `createTrainingJob.sync` CustomState in JSONPath, because
 * CDK's SageMakerCreateTrainingJob cannot set ContainerEntrypoint, spot, checkpoints or
 * CompressionType; its IAM is therefore written by hand (./training-job-iam.ts), as CDK's task
 * would, but scoped to this stack's job-name prefix. The trainer's image reaches ECR through
 * ./trainer-image-mirror.ts.
 */
import { Aws, Duration } from 'aws-cdk-lib';
import type { Project } from 'aws-cdk-lib/aws-codebuild';
import type { Repository } from 'aws-cdk-lib/aws-ecr';
import { type IGrantable, PolicyStatement, type Role } from 'aws-cdk-lib/aws-iam';
import { Choice, Condition, CustomState, Errors, JitterType, JsonPath, type State, type TaskStateBase, TaskInput, Timeout, Wait, WaitTime } from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { inputPath, RUN_PATH } from '#shared/execution';
import { CALLBACK_URL_ENV, CHECKPOINT_LOCAL_PATH, CONTAINER_ENTRYPOINT, REQUEST_CHANNEL, SAGEMAKER_TASK_ERRORS, SAGEMAKER_PREFIX, sagemakerTrainers } from '#shared/trainers/sagemaker/training-jobs';
import { HouseFunction } from './function.ts';
import { TRANSIENT_RETRY } from './retries.ts';
import type { Storage } from './storage.ts';
import { createMirrorProject, imageInEcr, mirrorRepositories } from './trainer-image-mirror.ts';
import { createJobRole, grantJobRuns } from './training-job-iam.ts';

export interface SageMakerTrainingProps {
  readonly config: Config;
  readonly storage: Storage;
  /** Where a failure goes (the Catch writes `$.error`). */
  readonly onError: State;
  /** The step after a finished job ("Stage the weights in S3"), reading the run's output_url (RUN_PATH). */
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
    this.repositories = mirrorRepositories(this, config);
    this.mirrorRepositoryNames = Object.fromEntries(sagemakerTrainers(config).map(([name], i) => [name, this.repositories[i]!.repositoryName]));
    this.bucketArnForObjects = (pattern) => storage.bucket.arnForObjects(pattern);
    this.jobRole = createJobRole(this, storage, this.repositories, this.jobPrefix);
    this.mirrorProject = createMirrorProject(this, config, this.repositories);
    // Its environment and grants are declared in infra/functions.ts.
    this.prepare = new HouseFunction(this, 'Prepare', { name: 'prepare-training-job', config });
    this.jobTask = this.createJobTask(config);
    this.start = this.trainerChoice(props, this.trainingJob(props));
  }

  /**
   * The job, prepared first; a job SageMaker found no instance for is prepared again (a new job
   * name) after a wait the prepare step chose. Answers the first preparation.
   */
  private trainingJob(props: SageMakerTrainingProps): State {
    const again = this.prepareStep('Prepare the SageMaker job again', true, props.onError);
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

    const first = this.prepareStep('Prepare the SageMaker job', false, props.onError);
    first.next(this.jobTask);
    return first;
  }

  /** Which trainings a job trains: a sagemaker trainer's, once its image is in ECR. */
  private trainerChoice(props: SageMakerTrainingProps, job: State): State {
    // A re-template's run is over (its weights are staged): no job, on to the finished run's output.
    const choice = new Choice(this, 'Does a SageMaker job train the model?').when(Condition.isPresent(inputPath('retemplate_of')), props.otherwise);
    sagemakerTrainers(props.config).forEach(([name, trainer], i) => {
      const entry = imageInEcr(this, {
        project: this.mirrorProject,
        name,
        image: trainer.image,
        secret: trainer.source_credentials_secret,
        repository: this.repositories[i]!,
        onError: props.onError,
        then: job,
      });
      choice.when(Condition.stringEquals(inputPath('trainer'), name), entry);
    });
    return choice.otherwise(props.otherwise);
  }

  private prepareStep(name: string, retry: boolean, onError: State): TaskStateBase {
    return new LambdaInvoke(this, name, {
      lambdaFunction: this.prepare,
      payload: TaskInput.fromObject({ training_id: JsonPath.stringAt('$.training_id'), retry }),
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      resultPath: '$.job',
      // Input files stream through it into the request channel.
      taskTimeout: Timeout.duration(Duration.seconds(900)),
    })
      .addRetry(TRANSIENT_RETRY)
      .addCatch(onError, { errors: [Errors.ALL], resultPath: '$.error' });
  }

  /** The state machine's rights to run this stack's jobs (./training-job-iam.ts). */
  grantRun(grantee: IGrantable): void {
    grantJobRuns(grantee, this.jobRole, this.jobPrefix);
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
        ResultPath: RUN_PATH,
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
}
