/**
 * A configuration with a sagemaker trainer: the synthesized createTrainingJob.sync state, its
 * IAM (state machine and job role), cdk-nag, and the resolved definition run by the local
 * executor through the capacity retry and the failure path.
 */
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import '#infra/local/stepfunctions/polyfill';
import { StateMachine } from 'aws-local-stepfunctions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Config, mergeConfig, parseConfig } from '#shared/config';
import { jobFailureMessage } from '#shared/trainers/sagemaker/training-jobs';
import type { SynthesizedDefinition } from '#infra/local/cloudformation/state-machine';
import { synthesizeDefinition } from '#infra/local/cloudformation/synthesize';
import { lambdaEvent } from '#infra/local/lambda/task';
import { localRepositoryName } from '#infra/local/names';
import { DreamboothStack } from '#infra/stack';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();
const IMAGE = `r8.im/replicate/dreambooth@sha256:${'c'.repeat(64)}`;
const GPU = { backend: 'sagemaker', image: IMAGE, instance_type: 'ml.g5.2xlarge', max_runtime_seconds: 7200, spot: true, max_wait_seconds: 10_800 };
function config(trainer: Record<string, unknown> = GPU): Config {
  const sections = { limits: {}, egress: {}, retention: {}, webhooks: {}, timeouts: {} };
  return parseConfig(mergeConfig(mergeConfig(cdkJson.context.dreambooth, sections), { trainers: { gpu: trainer } }));
}

const CHOICE = 'Does a SageMaker job train the model?';
const PREPARE = 'Prepare the SageMaker job';
const AGAIN = 'Prepare the SageMaker job again';
const JOB = 'Train the model on SageMaker';
const NO_CAPACITY = 'Did SageMaker lack capacity?';
const STAGE = 'Stage the weights in S3';
const SLOT = 'Wait for a free slot on the trainer';
const FREE = 'Free the trainer slot';
const MIRROR = 'Copy the gpu image into ECR';
const IN_ECR = 'Is the gpu image in ECR?';
const WAIT = 'Start the trainer and wait for its callback';
const TRAINING = 'a'.repeat(26);

describe('a sagemaker trainer in the stack', () => {
  let app: App;
  let stack: DreamboothStack;
  let template: Template;
  let states: Record<string, any>;
  let startAt: string;

  beforeAll(() => {
    app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    stack = new DreamboothStack(app, 'Dreambooth', { config: config() });
    template = Template.fromStack(stack);
    const asl = synthesizeDefinition(config()).asl;
    states = asl.States;
    startAt = asl.StartAt;
  });

  it('trains with a createTrainingJob.sync state: the runner as entrypoint, uncompressed output, limits from the plan', () => {
    const job = states[JOB];
    expect(job.Resource).toBe('arn:aws:states:::sagemaker:createTrainingJob.sync');
    expect(job.Parameters.AlgorithmSpecification).toEqual({
      'TrainingImage.$': '$.job.image',
      TrainingInputMode: 'File',
      ContainerEntrypoint: ['python', '/opt/ml/input/data/request/dreambooth_runner.py'],
    });
    expect(job.Parameters.OutputDataConfig).toEqual({ 'S3OutputPath.$': '$.job.output_uri', CompressionType: 'NONE' });
    expect(job.Parameters['StoppingCondition.$']).toBe('$.job.stopping_condition');
    expect(job.Parameters['EnableManagedSpotTraining.$']).toBe('$.job.spot');
    expect(job.Parameters.CheckpointConfig).toEqual({ 'S3Uri.$': '$.job.checkpoint_uri', LocalPath: '/opt/ml/checkpoints' });
    expect(job.Parameters.RoleArn).toMatch(/^arn:aws:iam::000000000000:role\/WorkflowSageMakerJobRole/);
    // The same result shape as a trainer callback's, at the same path: the stage step reads $.run.output_url.
    expect(job.ResultSelector['output_url.$']).toBe('$.ModelArtifacts.S3ModelArtifacts');
    expect(job.ResultPath).toBe('$.run');
    // The job runs in the trainer slot it was granted, freed before the weights are staged.
    expect(job.Next).toBe(FREE);
    expect(states[FREE].Next).toBe(STAGE);
    expect(job.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: NO_CAPACITY }]);
    // The callback URL (it holds the training's secret) reaches only this job, by its environment.
    expect(job.Parameters.Environment).toEqual({ 'DREAMBOOTH_CALLBACK_URL.$': '$.job.callback_url' });
    // A refused create is retried under the name the optimized integration reports (throttling
    // among them); the quota and a failed job are not.
    expect(job.Retry).toEqual([
      { ErrorEquals: ['SageMaker.AmazonSageMakerException'], IntervalSeconds: 5, BackoffRate: 2, MaxAttempts: 4, MaxDelaySeconds: 60, JitterStrategy: 'FULL' },
    ]);
    // The capacity test reads the Cause only when there is one (no States.Runtime when it is absent).
    expect(states[NO_CAPACITY].Choices[0].And.slice(0, 2)).toEqual([
      { Variable: '$.error.Cause', IsPresent: true },
      { Variable: '$.error.Cause', IsString: true },
    ]);
    // Run time plus the spot wait, plus a backstop for provisioning and the image download.
    expect(job.TimeoutSeconds).toBe(7200 + 10_800 + 3 * 3600);
    expect(states[STAGE].Parameters['output_url.$']).toBe('$.run.output_url');
  });

  it('routes only the sagemaker trainers to the job; the others wait for their callback', () => {
    const choice = states[CHOICE];
    expect(startAt).toBe(SLOT);
    expect(states[SLOT].Next).toBe(CHOICE);
    expect(choice.Choices).toEqual([
      // A re-template's run is over: no job.
      { Variable: '$.retemplate_of', IsPresent: true, Next: WAIT },
      { Variable: '$.trainer', StringEquals: 'gpu', Next: IN_ECR },
    ]);
    // ECR is asked for the digest first: found, the job starts; not found (or the check failed
    // at all), the mirror copies it.
    // CloudFormation names the repository; the resolved definition holds local mode's name for it.
    const mirror = localRepositoryName(stack.getLogicalId(stack.workflow.sagemaker!.repositories[0]!.node.defaultChild as CfnElement));
    expect(states[IN_ECR]).toMatchObject({
      Type: 'Task',
      Resource: 'arn:aws:states:::aws-sdk:ecr:describeImages',
      Parameters: { RepositoryName: mirror, ImageIds: [{ ImageDigest: `sha256:${'c'.repeat(64)}` }] },
      ResultPath: null,
      Next: PREPARE,
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: null, Next: MIRROR }],
    });
    // The image is copied into ECR by digest before the job; the job runs the copy.
    expect(states[MIRROR].Resource).toBe('arn:aws:states:::codebuild:startBuild.sync');
    expect(states[MIRROR].Parameters.EnvironmentVariablesOverride).toEqual([
      { Name: 'SOURCE_IMAGE', Type: 'PLAINTEXT', Value: IMAGE },
      { Name: 'TARGET_REPOSITORY', Type: 'PLAINTEXT', Value: `000000000000.dkr.ecr.us-east-1.amazonaws.com/${mirror}` },
    ]);
    expect(states[MIRROR].Next).toBe(PREPARE);
    expect(choice.Default).toBe(WAIT);
  });

  it('lets the state machine run only this stack’s jobs, pass only the job role, and use the managed events rule', () => {
    const prefix = stack.workflow.sagemaker!.jobPrefix;
    expect(prefix).toMatch(/^db-[0-9a-f]{8}-$/);
    // 63 characters hold the prefix, a training id and an attempt number.
    expect(`${prefix}${'x'.repeat(40)}-9`.length).toBeLessThanOrEqual(63);
    const policies = template.findResources('AWS::IAM::Policy');
    const statements = Object.values(policies).flatMap((p: any) => stack.resolve(p.Properties.PolicyDocument.Statement) as any[]);
    const text = JSON.stringify(statements);
    const sagemaker = statements.find((s) => [s.Action].flat().includes('sagemaker:CreateTrainingJob'));
    // ListTags with the job calls, as the `.sync` integration's documented policy has it, on this stack's jobs only.
    expect([sagemaker.Action].flat().sort()).toEqual(['sagemaker:CreateTrainingJob', 'sagemaker:DescribeTrainingJob', 'sagemaker:ListTags', 'sagemaker:StopTrainingJob']);
    expect(JSON.stringify(sagemaker.Resource)).toContain(`:training-job/${prefix}*`);
    const pass = statements.find((s) => s.Action === 'iam:PassRole');
    expect(pass.Condition).toEqual({ StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } });
    expect(JSON.stringify(pass.Resource)).toContain('JobRole');
    expect(text).toContain('rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule');
    // The training state machine's SageMaker rights are that one statement (predictions' endpoints
    // are other functions' rights: test/infra/serving.test.ts).
    const machineRole = stack.resolve((stack.workflow.stateMachine.role.node.defaultChild as any).ref);
    const machine = Object.values(policies).filter((p: any) => JSON.stringify(p.Properties.Roles) === JSON.stringify([machineRole]));
    const machineStatements = machine.flatMap((p: any) => stack.resolve(p.Properties.PolicyDocument.Statement) as any[]);
    expect(machineStatements.filter((s) => [s.Action].flat().some((a: string) => a.startsWith('sagemaker:')))).toHaveLength(1);
    expect(statements.filter((s) => [s.Action].flat().some((a: string) => /^sagemaker:.*TrainingJob/.test(a)))).toHaveLength(1);
    // The presence check reads the mirror's repository, and nothing else in ECR.
    const ecr = machine.flatMap((p: any) => stack.resolve(p.Properties.PolicyDocument.Statement) as any[]).filter((s) => [s.Action].flat().some((a: string) => a.startsWith('ecr:')));
    expect(ecr).toHaveLength(1);
    expect(ecr[0].Action).toBe('ecr:DescribeImages');
    expect(ecr[0].Resource).toEqual({ 'Fn::GetAtt': [stack.getLogicalId(stack.workflow.sagemaker!.repositories[0]!.node.defaultChild as any), 'Arn'] });
  });

  it('gives the job role its request channel to read, its output and checkpoints to write, its mirror to pull', () => {
    const role = Object.entries(template.findResources('AWS::IAM::Role')).find(([id]) => id.includes('JobRole'))!;
    expect(JSON.stringify(role[1].Properties.AssumeRolePolicyDocument)).toContain('sagemaker.amazonaws.com');
    const policy = Object.values(template.findResources('AWS::IAM::Policy')).find((p: any) => JSON.stringify(p.Properties.Roles).includes(role[0])) as any;
    const flat = JSON.stringify(stack.resolve(policy.Properties.PolicyDocument));
    expect(flat).toContain('/sagemaker/*/request/*');
    expect(flat).toContain('/sagemaker/*/output/*');
    expect(flat).toContain('/sagemaker/*/checkpoints/*');
    expect(flat).not.toContain('/staged/');
    expect(flat).toContain('ecr:BatchGetImage');
  });

  it('lets CloudFormation name each trainer mirror and deletes it, emptied, with the stack; every use names it by reference', () => {
    // A fixed name fails a second stack in the account and region, and a stack re-created after
    // `cdk destroy` (a retained repository keeps the name): "already exists".
    const repositories = Object.entries(template.findResources('AWS::ECR::Repository'));
    expect(repositories).toHaveLength(1);
    const [id, repository] = repositories[0]!;
    expect(repository.Properties.RepositoryName).toBeUndefined();
    expect(repository).toMatchObject({ DeletionPolicy: 'Delete', UpdateReplacePolicy: 'Delete', Properties: { EmptyOnDelete: true, ImageTagMutability: 'IMMUTABLE' } });
    // The presence check and the mirror's target in the definition, and the prepare step's environment.
    const machine = Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0] as any;
    const definition = JSON.stringify(machine.Properties.DefinitionString);
    expect(definition.split(JSON.stringify({ Ref: id })).length - 1).toBe(2);
    const fn = stack.workflow.sagemaker!.prepare;
    const env = (Stack.of(fn).resolve((fn.node.defaultChild as any).environment) as any).variables;
    expect(JSON.stringify(env.SAGEMAKER_MIRRORS)).toContain(JSON.stringify({ Ref: id }));
    // Local mode resolves the same references to one local name.
    const mirror = localRepositoryName(id);
    expect(JSON.parse(synthesizeDefinition(config()).sagemakerMirrors!)).toEqual({ gpu: mirror });
  });

  it('is cdk-nag clean', () => {
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => v.ruleName)).toEqual([]);
  });

  it('bakes the runner into the prepare function and names the job prefix in its environment', () => {
    const fn = stack.workflow.sagemaker!.prepare;
    const env = (Stack.of(fn).resolve((fn.node.defaultChild as any).environment) as any).variables;
    expect(env.SAGEMAKER_JOB_PREFIX).toBe(stack.workflow.sagemaker!.jobPrefix);
    expect(env.PUBLIC_URL).toBeDefined();
  });
});

describe('the sagemaker path, run by the local executor', () => {
  let def: SynthesizedDefinition;
  beforeAll(() => {
    def = synthesizeDefinition(config());
  });

  const plan = (attempt: number) => ({
    name: `db-x-${TRAINING}${attempt ? `-${attempt}` : ''}`,
    image: IMAGE,
    callback_url: `https://api.example/v1/callbacks/${TRAINING}?secret=s`,
    request_uri: `s3://b/sagemaker/${TRAINING}/request/`,
    output_uri: `s3://b/sagemaker/${TRAINING}/output/`,
    checkpoint_uri: `s3://b/sagemaker/${TRAINING}/checkpoints/`,
    resource_config: { InstanceType: 'ml.g5.2xlarge', InstanceCount: 1, VolumeSizeInGB: 100 },
    stopping_condition: { MaxRuntimeInSeconds: 7200 },
    spot: false,
    retry_wait_seconds: 0,
  });
  async function run(behave: Record<string, (event: any) => unknown>, input: Record<string, unknown> = {}) {
    const calls: { state: string; event: any }[] = [];
    const handlers = Object.fromEntries(
      Object.entries(def.taskHandlers).map(([state, target]) => [
        state,
        async (input: unknown) => {
          const event = lambdaEvent(target, input);
          calls.push({ state, event });
          const slot = state === SLOT ? { server: null, granted_at: '2026-12-01T00:00:00.000Z' } : null;
          return ((await behave[state]?.(event)) ?? slot) as never;
        },
      ]),
    );
    const machine = new StateMachine(def.asl as never, { validationOptions: { checkArn: false } });
    const execution = machine.run({ training_id: TRAINING, trainer: 'gpu', ...input } as never, {
      overrides: { taskResourceLocalHandlers: handlers, retryIntervalOverrides: Object.fromEntries(def.stateNames.map((n) => [n, 0])) },
      // The slot wait is a callback task: it needs a token and the execution's id.
      context: { Task: { Token: 'token-1' }, Execution: { Id: `arn:aws:states:us-east-1:000000000000:execution:m:${TRAINING}` } },
    });
    const error = await execution.result.then(() => null, (e: Error) => e);
    return { ok: !error, error, calls, states: calls.map((c) => c.state) };
  }
  const failedJob = (description: Record<string, unknown>) => Object.assign(new Error(JSON.stringify(description)), { name: 'States.TaskFailed' });
  const staged = () => ({
    size: 1,
    copies_template: false,
    kind: 'image',
    format: 'zip',
    build_env: { TRAINING_ID: TRAINING, WEIGHTS_S3_URI: 's3://b/staged/x.zip', WEIGHTS_FORMAT: 'zip', TEMPLATE_IMAGE: 't@sha256:0', IMAGE_REPOSITORY: 'r', IMAGE_TAG: 'v', NOTES_S3_URI: '' },
  });
  // What the build exports (lambdas/shared/build-env.ts): the version and its SageMaker variant.
  const built = () => ({
    Build: {
      Id: 'b',
      ExportedEnvironmentVariables: [
        { Name: 'IMAGE_DIGEST', Value: 'd'.repeat(64) },
        { Name: 'IMAGE_URI', Value: 'r@sha256:d' },
        { Name: 'IMAGE_SERVING_URI', Value: 'r@sha256:e' },
      ],
    },
  });

  it('retries a job that found no capacity as a new job after a wait, then stages its output', async () => {
    let jobs = 0;
    const r = await run({
      [PREPARE]: () => plan(0),
      [AGAIN]: () => plan(1),
      [JOB]: () => {
        if (++jobs === 1) throw failedJob({ TrainingJobStatus: 'Failed', FailureReason: 'CapacityError: Unable to provision requested ML compute capacity.' });
        return { TrainingJobStatus: 'Completed', ModelArtifacts: { S3ModelArtifacts: `s3://b/sagemaker/${TRAINING}/output/j/output/model/` }, TrainingTimeInSeconds: 5 };
      },
      [STAGE]: staged,
      'Build and push the model image on Lambda compute': built,
    });
    expect(r.ok).toBe(true);
    // ECR has the image (DescribeImages answered): no mirror build.
    expect(r.states.slice(0, 8)).toEqual([SLOT, IN_ECR, PREPARE, JOB, AGAIN, JOB, FREE, STAGE]);
    expect(r.calls.find((c) => c.state === AGAIN)!.event).toEqual({ training_id: TRAINING, retry: true });
    expect(r.calls.filter((c) => c.state === JOB).map((c) => c.event.TrainingJobName)).toEqual([plan(0).name, plan(1).name]);
    expect(r.calls.find((c) => c.state === STAGE)!.event.output_url).toBe(`s3://b/sagemaker/${TRAINING}/output/j/output/model/`);
  });

  it('mirrors the image when ECR does not have it, or when the check itself fails, and then trains', async () => {
    const missing = () => {
      throw Object.assign(new Error('The image does not exist within the repository'), { name: 'Ecr.ImageNotFoundException' });
    };
    const refused = () => {
      throw Object.assign(new Error('not authorized to perform: ecr:DescribeImages'), { name: 'Ecr.AccessDeniedException' });
    };
    for (const check of [missing, refused]) {
      const r = await run({
        [IN_ECR]: check,
        [PREPARE]: () => plan(0),
        [JOB]: () => ({ TrainingJobStatus: 'Completed', ModelArtifacts: { S3ModelArtifacts: `s3://b/sagemaker/${TRAINING}/output/j/output/model/` }, TrainingTimeInSeconds: 5 }),
        [STAGE]: staged,
        'Build and push the model image on Lambda compute': built,
      });
      expect(r.states.slice(0, 5)).toEqual([SLOT, IN_ECR, MIRROR, PREPARE, JOB]);
      expect(r.ok).toBe(true);
      // The mirror gets the training's state as it was, not the check's error.
      expect(r.calls.find((c) => c.state === MIRROR)!.event.EnvironmentVariablesOverride[0].Value).toBe(IMAGE);
    }
  });

  it.each([
    ['no Cause at all', undefined],
    ['a null Cause', null],
  ])('records the failure when the caught error has %s, instead of failing the execution with States.Runtime', async (_what, cause) => {
    const r = await run({
      [PREPARE]: () => plan(0),
      [JOB]: () => {
        throw Object.assign(new Error(), { name: 'States.Timeout', message: cause });
      },
    });
    expect(r.error?.name).not.toBe('States.Runtime');
    expect(r.states.slice(-3, -1)).toEqual(['Free the trainer slot after a failure', 'Record the failure']);
    expect(r.states).not.toContain(AGAIN);
  });

  it('retries a throttled create under the name the integration reports, and fails a refused quota at once', async () => {
    const refused = (name: string, code: string) => Object.assign(new Error(`Rate exceeded (Service: AmazonSageMaker; Status Code: 400; Error Code: ${code})`), { name });
    let creates = 0;
    const throttled = await run({
      [PREPARE]: () => plan(0),
      [JOB]: () => {
        if (++creates <= 2) throw refused('SageMaker.AmazonSageMakerException', 'ThrottlingException');
        return { TrainingJobStatus: 'Completed', ModelArtifacts: { S3ModelArtifacts: `s3://b/sagemaker/${TRAINING}/output/j/output/model/` }, TrainingTimeInSeconds: 5 };
      },
      [STAGE]: staged,
      'Build and push the model image on Lambda compute': built,
    });
    expect(throttled.ok).toBe(true);
    expect(throttled.states.filter((s) => s === JOB)).toHaveLength(3);

    const quota = await run({
      [PREPARE]: () => plan(0),
      [JOB]: () => {
        throw refused('SageMaker.ResourceLimitExceededException', 'ResourceLimitExceeded');
      },
    });
    expect(quota.states.filter((s) => s === JOB)).toHaveLength(1);
    expect(quota.states.slice(-3, -1)).toEqual(['Free the trainer slot after a failure', 'Record the failure']);
    const error = quota.calls.find((c) => c.state === 'Record the failure')!.event.error;
    expect(jobFailureMessage(error, 'gpu', config().trainers.gpu as never)).toContain('Service Quotas console');
  });

  it("re-templates a SageMaker-trained training without a job: the finished run's archive goes straight to the stage step", async () => {
    const archive = `s3://b/sagemaker/${'b'.repeat(26)}/output/j/output/model/output.zip`;
    const r = await run(
      {
        [WAIT]: () => ({ status: 'succeeded', output_url: archive }),
        [STAGE]: staged,
        'Build and push the model image on Lambda compute': built,
      },
      { retemplate_of: 'b'.repeat(26) },
    );
    expect(r.ok).toBe(true);
    expect(r.states.slice(0, 4)).toEqual([SLOT, WAIT, FREE, STAGE]);
    expect(r.states).not.toContain(JOB);
    expect(r.calls.find((c) => c.state === STAGE)!.event.output_url).toBe(archive);
  });

  it("sends any other job failure to the failure path with the job's description", async () => {
    const r = await run({
      [PREPARE]: () => plan(0),
      [JOB]: () => {
        throw failedJob({ TrainingJobName: 'j', TrainingJobStatus: 'Failed', FailureReason: 'AlgorithmError: CUDA out of memory' });
      },
    });
    expect(r.ok).toBe(false);
    // The slot is freed first, then the failure recorded.
    expect(r.states.slice(-3, -1)).toEqual(['Free the trainer slot after a failure', 'Record the failure']);
    expect(r.states).not.toContain(AGAIN);
    const error = r.calls.find((c) => c.state === 'Record the failure')!.event.error;
    expect(jobFailureMessage(error, 'gpu')).toBe('the SageMaker training job j failed: CUDA out of memory');
  });
});

describe('the errors users read', () => {
  const trainer = config().trainers.gpu as never;
  it('names the quota and where to raise it', () => {
    const m = jobFailureMessage({ Error: 'SageMaker.ResourceLimitExceededException', Cause: 'The account-level service limit is 0 Instances' }, 'gpu', trainer);
    expect(m).toContain('"ml.g5.2xlarge for spot training job usage"');
    expect(m).toContain('Service Quotas console');
  });
  it('says which limit stopped the job', () => {
    expect(jobFailureMessage({ Error: 'States.TaskFailed', Cause: JSON.stringify({ TrainingJobName: 'j', TrainingJobStatus: 'Stopped', SecondaryStatus: 'MaxRuntimeExceeded' }) }, 'gpu', trainer)).toBe(
      'the SageMaker training job j reached max_runtime_seconds (7200 s) and was stopped; raise max_runtime_seconds of trainer gpu',
    );
    expect(jobFailureMessage({ Error: 'States.TaskFailed', Cause: JSON.stringify({ TrainingJobName: 'j', TrainingJobStatus: 'Stopped', SecondaryStatus: 'MaxWaitTimeExceeded' }) }, 'gpu', trainer)).toContain(
      'past max_wait_seconds (10800 s)',
    );
  });
  it('leaves errors that are not the job’s to the general message', () => {
    expect(jobFailureMessage({ Error: 'TrainerFailed', Cause: '{"errorMessage":"x"}' }, 'gpu', trainer)).toBeNull();
  });
});
