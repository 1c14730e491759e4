/**
 * The SageMaker training jobs' IAM, written by hand (the train step is a CustomState, so CDK's
 * task grants nothing) and scoped to this stack's job-name prefix: the role each job runs with,
 * and the state machine's rights to run jobs.
 */
import { ArnFormat, Stack } from 'aws-cdk-lib';
import type { Repository } from 'aws-cdk-lib/aws-ecr';
import { type IGrantable, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { REQUEST_CHANNEL, SAGEMAKER_PREFIX } from '#shared/trainers/sagemaker/training-jobs';
import type { Storage } from './storage.ts';

/** Reads its request channel, writes its output and checkpoints, pulls its images, writes its logs. */
export function createJobRole(scope: Construct, storage: Storage, repositories: Repository[], jobPrefix: string): Role {
  const role = new Role(scope, 'JobRole', {
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
  for (const repository of repositories) repository.grantPull(role);
  const stack = Stack.of(scope);
  const logGroup = stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: '/aws/sagemaker/TrainingJobs', arnFormat: ArnFormat.COLON_RESOURCE_NAME });
  role.addToPolicy(new PolicyStatement({ actions: ['logs:CreateLogGroup', 'logs:DescribeLogStreams'], resources: [logGroup] }));
  role.addToPolicy(new PolicyStatement({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [`${logGroup}:log-stream:${jobPrefix}*`] }));
  role.addToPolicy(
    new PolicyStatement({
      actions: ['cloudwatch:PutMetricData'],
      resources: ['*'],
      conditions: { StringLike: { 'cloudwatch:namespace': '/aws/sagemaker/*' } },
    }),
  );
  return role;
}

/**
 * What the state machine needs for `createTrainingJob.sync`: the job calls on this stack's
 * job names only, passing the job role to SageMaker only, and the managed EventBridge rule
 * through which Step Functions learns that a job ended.
 */
export function grantJobRuns(grantee: IGrantable, jobRole: Role, jobPrefix: string): void {
  const stack = Stack.of(jobRole);
  const jobs = stack.formatArn({ service: 'sagemaker', resource: 'training-job', resourceName: `${jobPrefix}*` });
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
      resources: [jobRole.roleArn],
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
