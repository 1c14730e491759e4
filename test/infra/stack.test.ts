/**
 * The synthesized template: the properties that matter for security and operation.
 */
import { readFileSync } from 'node:fs';
import { App, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Policy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig } from '#shared/config';
import { RESOURCELESS_ACTIONS } from '#infra/nag';
import { DreamboothStack } from '#infra/stack';
import { readCdkJson, repoFile } from '#test-helpers/paths';

type Resources = Record<string, { Type: string; Properties: Record<string, any>; DeletionPolicy?: string }>;

// Prepare: the repository's cdk.json configuration with non-default values where the template shows them.
const cdkJson = readCdkJson();
const OVERRIDES = {
  limits: {},
  egress: {},
  webhooks: {},
  retention: { staged_archive_days: 3 },
  timeouts: { build_minutes: 42, build_queued_minutes: 17 },
};

function synth(overrides: Record<string, unknown> = {}) {
  // Shallow over the merge: a registry of another type replaces the whole section.
  const raw = { ...(mergeConfig(cdkJson.context.dreambooth, OVERRIDES) as object), ...overrides };
  const config = parseConfig(raw);
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new DreamboothStack(app, 'Dreambooth', { config });
  return { app, stack, template: Template.fromStack(stack) };
}

const ofType = (resources: Resources, type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
/** The model build's CodeBuild projects: not the one that makes templates' serving variants (test/infra/template-variant.test.ts). */
const buildProjects = (resources: Resources) => ofType(resources, 'AWS::CodeBuild::Project').filter(([id]) => !id.startsWith('ServingTemplateVariant'));

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
}

/** Every statement of the policies attached to a function's role. */
function statementsOf(resources: Resources, stack: DreamboothStack, fn: { role?: { node: { defaultChild?: unknown } } }): Statement[] {
  const role = stack.getLogicalId(fn.role!.node.defaultChild as never);
  return ofType(resources, 'AWS::IAM::Policy')
    .filter(([, p]) => p.Properties.Roles.some((r: { Ref?: string }) => r.Ref === role))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as Statement[]);
}

describe('synthesized template', () => {
  let app: App;
  let stack: DreamboothStack;
  let template: Template;
  let resources: Resources;

  beforeAll(() => {
    ({ app, stack, template } = synth());
    resources = template.toJSON().Resources;
  });

  it('keeps the data bucket private, encrypted, TLS-only, logged and expiring', () => {
    const id = stack.getLogicalId(stack.storage.bucket.node.defaultChild as never);
    const bucket = resources[id]!;
    expect(bucket.DeletionPolicy).toBe('Retain');
    expect(bucket.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm).toBe(
      'AES256',
    );
    expect(bucket.Properties.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(bucket.Properties.LoggingConfiguration.DestinationBucketName).toBeDefined();
    const rules = bucket.Properties.LifecycleConfiguration.Rules;
    expect(rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Prefix: 'staged/', ExpirationInDays: 3 }),
        // Whole trainer logs go with the training's staged data.
        expect.objectContaining({ Prefix: 'logs/', ExpirationInDays: 3 }),
        // Uploads outlive the longest wait in a trainer's queue (a day by default) by a day.
        expect.objectContaining({ Prefix: 'uploads/', ExpirationInDays: 2 }),
        expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
      ]),
    );
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: id },
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      },
    });
  });

  it('gives the table point-in-time recovery, on-demand billing and the listing indexes', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: [
        Match.objectLike({
          IndexName: 'list',
          KeySchema: [
            { AttributeName: 'listpk', KeyType: 'HASH' },
            { AttributeName: 'listsk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        }),
        // One tenant's trainings, newest first: full pages per owner.
        Match.objectLike({
          IndexName: 'owner',
          KeySchema: [
            { AttributeName: 'owner', KeyType: 'HASH' },
            { AttributeName: 'listsk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        }),
        // One tenant's predictions, newest first (a training's `owner` is not on them).
        Match.objectLike({
          IndexName: 'prediction-owner',
          KeySchema: [
            { AttributeName: 'prediction_owner', KeyType: 'HASH' },
            { AttributeName: 'listsk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        }),
      ],
    });
  });

  it('logs API access without the path or the query string, and no request data', () => {
    const [[, stage]] = ofType(resources, 'AWS::ApiGateway::Stage') as [[string, Resources[string]]];
    expect(stage.Properties.StageName).toBe('prod');
    expect(stage.Properties.TracingEnabled).toBe(true);
    const format = stage.Properties.AccessLogSetting.Format as string;
    const fields = Object.values(JSON.parse(format)) as string[];
    expect(fields).toContain('$context.resourcePath');
    expect(fields).toContain('$context.status');
    expect(format).not.toMatch(/\$context\.path|querystring|\$input|\$method\.request/i);
    const settings = stage.Properties.MethodSettings as Array<Record<string, unknown>>;
    for (const s of settings) expect(s.DataTraceEnabled).toBe(false);
    expect(settings).toContainEqual(expect.objectContaining({ HttpMethod: '*', ResourcePath: '/*', LoggingLevel: 'INFO' }));
  });

  it('puts the token authorizer on every route but the trainer callback', () => {
    const paths = new Map<string, string>();
    const pathOf = (id: string): string => {
      const r = resources[id]!;
      const parent = r.Properties.ParentId;
      const prefix = parent?.Ref ? pathOf(parent.Ref) : '';
      return `${prefix}/${r.Properties.PathPart}`;
    };
    for (const [id] of ofType(resources, 'AWS::ApiGateway::Resource')) paths.set(id, pathOf(id));
    const [[authorizerId, authorizer]] = ofType(resources, 'AWS::ApiGateway::Authorizer') as [[string, Resources[string]]];
    expect(authorizer.Properties).toMatchObject({
      Type: 'TOKEN',
      IdentitySource: 'method.request.header.Authorization',
      AuthorizerResultTtlInSeconds: 60,
    });

    const routes = ofType(resources, 'AWS::ApiGateway::Method').map(([, m]) => ({
      route: `${m.Properties.HttpMethod} ${paths.get(m.Properties.ResourceId.Ref)}`,
      auth: m.Properties.AuthorizationType,
      authorizer: m.Properties.AuthorizerId?.Ref,
    }));
    // Trainer-facing routes: the Lambda checks the callback secret or the trainer's upload token.
    const trainerRoutes = [
      'POST /v1/callbacks/{id}',
      'POST /v1/trainer-uploads/{trainer}',
      'POST /v1/trainer-uploads/{trainer}/{upload_id}/parts/{n}',
      'POST /v1/trainer-uploads/{trainer}/{upload_id}/complete',
      'POST /v1/trainer-uploads/{trainer}/{upload_id}/abort',
    ];
    const trainer = routes.filter((r) => trainerRoutes.includes(r.route));
    expect(trainer.map((r) => r.route).sort()).toEqual([...trainerRoutes].sort());
    for (const r of trainer) expect(r).toEqual({ route: r.route, auth: 'NONE', authorizer: undefined });
    // The OpenAPI document is public (see the README); every other route needs a token.
    const publicRoutes = ['GET /v1/openapi.json'];
    for (const r of routes.filter((x) => publicRoutes.includes(x.route)))
      expect(r).toEqual({ route: r.route, auth: 'NONE', authorizer: undefined });
    const tokenRoutes = routes.filter((r) => !trainerRoutes.includes(r.route) && !publicRoutes.includes(r.route));
    expect(tokenRoutes.map((r) => r.route)).toEqual(
      expect.arrayContaining([
        'POST /v1/trainings',
        'GET /v1/trainings',
        'GET /v1/trainings/{id}',
        'POST /v1/trainings/{id}/cancel',
        'GET /v1/models/{owner}/{name}/versions/{version}',
        'GET /v1/webhooks/default/secret',
        'GET /v1/trainers',
        'GET /v1/trainers/{owner}/{name}',
        'GET /v1/trainings/{id}/weights',
      ]),
    );
    for (const r of tokenRoutes) expect(r).toMatchObject({ auth: 'CUSTOM', authorizer: authorizerId });
  });

  it('logs every state machine event without execution data, and traces', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: false },
      TracingConfiguration: { Enabled: true },
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: Match.stringLikeRegexp('^/aws/vendedlogs/states/'),
    });
  });

  it('builds with append by default: no privileged mode, Lambda compute and EC2 compute', () => {
    const projects = buildProjects(resources).map(([, p]) => p.Properties);
    expect(projects).toHaveLength(2);
    const spec = parse(readFileSync(repoFile('buildspecs/append-model.yml'), 'utf8'));
    for (const p of projects) {
      expect(p.Environment.PrivilegedMode).toBe(false);
      expect(parse(p.Source.BuildSpec)).toEqual(spec);
      // The source is the bundled script, an asset in the CDK assets bucket.
      expect(p.Source).toMatchObject({ Type: 'S3', Location: expect.anything() });
      const env = Object.fromEntries(
        (p.Environment.EnvironmentVariables as Array<{ Name: string; Value: unknown }>).map((v) => [v.Name, v.Value]),
      );
      expect(env).toMatchObject({ REGISTRY_TYPE: 'ecr', REPOSITORY_PREFIX: 'dreambooth', ARCHIVE_MAX_ENTRIES: '10000' });
    }
    const lambda = projects.find((p) => p.Environment.Type === 'ARM_LAMBDA_CONTAINER')!;
    expect(lambda.Environment).toMatchObject({
      ComputeType: 'BUILD_LAMBDA_2GB',
      Image: 'aws/codebuild/amazonlinux-aarch64-lambda-standard:nodejs22',
    });
    expect(lambda.TimeoutInMinutes).toBeUndefined();
    const ec2 = projects.find((p) => p.Environment.Type === 'LINUX_CONTAINER')!;
    expect(ec2.Environment.Image).toBe('aws/codebuild/standard:7.0');
    expect(ec2.TimeoutInMinutes).toBe(42);
    // The queue's timeout is the configured one, which the state machine's build step outlasts (test/infra/asl.test.ts).
    expect(ec2.QueuedTimeoutInMinutes).toBe(17);
    expect(lambda.QueuedTimeoutInMinutes).toBeUndefined();
  });

  it('builds with docker in one privileged standard:7.0 project when configured', () => {
    const { template: docker } = synth({ build: { strategy: 'docker' } });
    const projects = buildProjects(docker.findResources('AWS::CodeBuild::Project') as Resources).map(([, p]) => p);
    expect(projects).toHaveLength(1);
    const project = projects[0]!;
    expect(project.Properties.Environment).toMatchObject({ Image: 'aws/codebuild/standard:7.0', PrivilegedMode: true });
    expect(project.Properties.TimeoutInMinutes).toBe(42);
    expect(project.Properties.QueuedTimeoutInMinutes).toBe(17);
    const spec = parse(readFileSync(repoFile('buildspecs/build-model.yml'), 'utf8'));
    expect(parse(project.Properties.Source.BuildSpec)).toEqual(spec);
    // The source is the serving adapter, which the buildspec appends as the SageMaker variant.
    expect(project.Properties.Source).toMatchObject({ Type: 'S3', Location: expect.anything() });
    const env = Object.fromEntries(
      (project.Properties.Environment.EnvironmentVariables as Array<{ Name: string; Value: unknown }>).map((v) => [v.Name, v.Value]),
    );
    expect(env.REGISTRY_TYPE).toBe('ecr');
    expect(env.REPOSITORY_PREFIX).toBe('dreambooth');
  });

  it('runs every function on Node.js 22, arm64, traced, with its own log group and the config baked in', () => {
    const functions = ofType(resources, 'AWS::Lambda::Function');
    // The eleven training handlers and the four of serving, plus the demo trainer of the default configuration.
    expect(functions).toHaveLength(16);
    for (const [, fn] of functions) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        TracingConfig: { Mode: 'Active' },
        LoggingConfig: { LogGroup: { Ref: expect.any(String) } },
      });
      expect(Object.keys(fn.Properties.Environment.Variables)).not.toContain('DREAMBOOTH_CONFIG');
    }
    const api = stack.api.functions.api.node.defaultChild as never;
    const apiEnv = resources[stack.getLogicalId(api)]!.Properties.Environment.Variables;
    // The api's variables, exactly: it reads neither the API tokens (the authorizer does) nor
    // the callback key (the trainer steps do); BUCKET_NAME names its serving URLs and the
    // predictions' objects (its only S3 rights: below).
    for (const name of [
      'TABLE_NAME',
      'STATE_MACHINE_ARN',
      'PREDICTION_STATE_MACHINE_ARN',
      'PUBLIC_URL',
      'WEBHOOK_SECRET',
      'NOTIFY_FUNCTION',
    ]) {
      expect(apiEnv[name], name).toBeDefined();
    }
    expect(Object.keys(apiEnv).sort()).toEqual([
      'BUCKET_NAME',
      'DEMO_TRAINER_FUNCTION',
      'NOTIFY_FUNCTION',
      'PREDICTION_STATE_MACHINE_ARN',
      'PUBLIC_URL',
      'STATE_MACHINE_ARN',
      'TABLE_NAME',
      'WEBHOOK_SECRET',
    ]);
  });

  it('gives S3 object rights on uploads only to the upload helper, on trainer outputs only to the relay, logs only to their writers', () => {
    const actionsOf = (fn: { role?: unknown; node: unknown }) => {
      const role = stack.getLogicalId((fn as typeof stack.api.functions.api).role!.node.defaultChild as never);
      return ofType(resources, 'AWS::IAM::Policy')
        .filter(([, p]) => p.Properties.Roles.some((r: { Ref?: string }) => r.Ref === role))
        .flatMap(([, p]) => p.Properties.PolicyDocument.Statement.flatMap((s: { Action: string | string[] }) => [s.Action].flat()));
    };
    const s3ResourcesOf = (fn: { role?: unknown; node: unknown }) => {
      const role = stack.getLogicalId((fn as typeof stack.api.functions.api).role!.node.defaultChild as never);
      return ofType(resources, 'AWS::IAM::Policy')
        .filter(([, p]) => p.Properties.Roles.some((r: { Ref?: string }) => r.Ref === role))
        .flatMap(([, p]) => p.Properties.PolicyDocument.Statement)
        .filter((s: { Action: string | string[] }) => [s.Action].flat().some((a) => a.startsWith('s3:')))
        .flatMap((s: { Resource: unknown }) => [s.Resource].flat().map((r) => JSON.stringify(r)));
    };
    const callback = actionsOf(stack.api.functions.callback);
    const uploads = actionsOf(stack.api.functions.uploads);
    expect(callback).toEqual(expect.arrayContaining(['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat']));
    // The callback's only S3 right: writing a trainer's whole log under logs/ (test/infra/functions.test.ts).
    expect(callback.filter((a) => a.startsWith('s3:'))).toEqual(['s3:PutObject']);
    expect(uploads).toEqual(expect.arrayContaining(['s3:PutObject', 's3:AbortMultipartUpload']));
    expect(uploads.filter((a) => a.startsWith('states:') || a.startsWith('dynamodb:'))).toEqual([]);
    expect(actionsOf(stack.api.functions.upload)).toEqual(expect.arrayContaining(['s3:GetObject', 's3:PutObject']));
    // Beside S3, the upload function reads one training (owner, status) for output.weights, and nothing else.
    expect(actionsOf(stack.api.functions.upload).filter((a) => !/^(s3|logs|xray):/.test(a))).toEqual(['dynamodb:GetItem']);
    // The api's S3 rights: a prediction's request (written at submit) and its files (signed for
    // GET), under predictions/ only; no upload, staged archive or trainer output.
    expect(actionsOf(stack.api.functions.api).filter((a) => a.startsWith('s3:'))).toEqual(['s3:GetObject', 's3:PutObject']);
    expect(s3ResourcesOf(stack.api.functions.api)).toEqual([expect.stringContaining('/predictions/*')]);
  });

  it('frees a trainer slot on every end of an execution, with the least rights the queue needs', () => {
    const fn = stack.getLogicalId(stack.workflow.queue.fn.node.defaultChild as never);
    const machine = stack.getLogicalId(stack.workflow.stateMachine.node.defaultChild as never);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { stateMachineArn: [{ Ref: machine }], status: ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'] },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fn, 'Arn'] }, RetryPolicy: Match.objectLike({ MaximumRetryAttempts: 8 }) })],
    });
    const role = stack.getLogicalId(stack.workflow.queue.fn.role!.node.defaultChild as never);
    const statements = ofType(resources, 'AWS::IAM::Policy')
      .filter(([, p]) => p.Properties.Roles.some((r: { Ref?: string }) => r.Ref === role))
      .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as Array<{ Action: string | string[]; Resource: unknown }>);
    const actions = statements.flatMap((s) => [s.Action].flat());
    // Items of the table, the lease check on this state machine's executions, waking a waiter,
    // and the webhook of a training whose execution ended outside its steps (notify only).
    expect(actions.filter((a) => !/^(logs|xray):/.test(a)).sort()).toEqual(
      [
        'dynamodb:BatchGetItem',
        'dynamodb:ConditionCheckItem',
        'dynamodb:DeleteItem',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
        'lambda:InvokeFunction',
        'states:DescribeExecution',
        'states:SendTaskSuccess',
      ].sort(),
    );
    const notify = stack.getLogicalId(stack.webhook.notify.node.defaultChild as never);
    const invoke = statements.find((s) => [s.Action].flat().includes('lambda:InvokeFunction'))!;
    expect(JSON.stringify(invoke.Resource)).toContain(`"${notify}","Arn"`);
    const describe = statements.find((s) => [s.Action].flat().includes('states:DescribeExecution'))!;
    expect(JSON.stringify(describe.Resource)).toContain(`"${machine}","Name"`);
    expect(actions).not.toContain('states:StopExecution');
  });

  it('lets start-trainer settle its own task token (a run that already ended)', () => {
    const statements = statementsOf(resources, stack, stack.workflow.functions.startTrainer);
    const signals = statements.filter((s) => [s.Action].flat().includes('states:SendTaskSuccess'));
    expect(signals).toEqual([expect.objectContaining({ Effect: 'Allow', Resource: '*' })]);
    expect([signals[0]!.Action].flat()).toEqual(expect.arrayContaining(['states:SendTaskSuccess', 'states:SendTaskFailure']));
  });

  it('gives stage-weights no s3:ListBucket: a missing key answers 403, which it reads as missing', () => {
    const actions = statementsOf(resources, stack, stack.workflow.functions.stageWeights).flatMap((s) => [s.Action].flat());
    expect(actions).toEqual(expect.arrayContaining(['s3:GetObject', 's3:PutObject']));
    expect(actions.filter((a) => /^s3:List/.test(a))).toEqual([]);
  });

  it('grants a "*" resource only for actions that take no resource', () => {
    const unscoped: string[] = [];
    for (const [, policy] of ofType(resources, 'AWS::IAM::Policy')) {
      for (const s of policy.Properties.PolicyDocument.Statement) {
        if (s.Effect === 'Allow' && [s.Resource].flat().includes('*')) unscoped.push(...[s.Action].flat());
      }
    }
    expect(unscoped.filter((a) => !RESOURCELESS_ACTIONS.has(a))).toEqual([]);
    expect(unscoped).toEqual(expect.arrayContaining(['states:SendTaskSuccess', 'ecr:GetAuthorizationToken']));
  });

  it('passes AwsSolutions checks, every acknowledgement with a reason', () => {
    const report = new AwsSolutionsChecks().validateScope(app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)).toEqual([]);

    const reasons = app.node
      .findAll()
      .flatMap((c) => c.node.metadata)
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, string>));
    expect(reasons.length).toBeGreaterThan(5);
    for (const [id, reason] of reasons) expect(reason.length, id).toBeGreaterThan(30);
  });

  it('still reports a wildcard added after the acknowledgements', () => {
    const { app: fresh, stack: s } = synth();
    new Policy(s, 'Extra', {
      statements: [new PolicyStatement({ actions: ['s3:GetObject'], resources: ['*'] })],
    }).attachToRole(s.api.functions.api.role!);
    const report = new AwsSolutionsChecks().validateScope(fresh);
    expect(report.violations.map((v) => v.ruleName)).toContain('AwsSolutions-IAM5[Resource::*]');
  });
});

describe('a region without CodeBuild Lambda compute', () => {
  it('builds on EC2 compute only, where Lambda compute is offered on both', () => {
    const projects = (region: string) => {
      const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
      const s = new DreamboothStack(app, 'Dreambooth', { config: parseConfig(cdkJson.context.dreambooth), env: { region } });
      const found = buildProjects(Template.fromStack(s).findResources('AWS::CodeBuild::Project') as Resources).map(([, p]) => p);
      return {
        types: found.map((p) => p.Properties.Environment.ComputeType).sort(),
        choice: JSON.stringify(Template.fromStack(s).findResources('AWS::StepFunctions::StateMachine')),
      };
    };
    const offered = projects('eu-west-1');
    expect(offered.types).toEqual(['BUILD_GENERAL1_SMALL', 'BUILD_LAMBDA_2GB']);
    const elsewhere = projects('eu-south-2');
    expect(elsewhere.types).toEqual(['BUILD_GENERAL1_SMALL']);
    expect(elsewhere.choice).not.toContain('Lambda compute');
  });
});

describe('the docker strategy', () => {
  it('passes AwsSolutions checks with its privileged project acknowledged', () => {
    const { app } = synth({ build: { strategy: 'docker' } });
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => v.ruleName)).toEqual([]);
  });
});

describe('an OCI registry', () => {
  it('gives the build its credentials from Secrets Manager and no ECR rights', () => {
    const { app, template } = synth({ registry: { type: 'oci', host: 'ghcr.io/acme', credentials_secret: 'registry-creds' } });
    template.hasResourceProperties('AWS::CodeBuild::Project', {
      Environment: Match.objectLike({
        EnvironmentVariables: Match.arrayWith([
          { Name: 'REGISTRY_TYPE', Type: 'PLAINTEXT', Value: 'oci' },
          { Name: 'REGISTRY_HOST', Type: 'PLAINTEXT', Value: 'ghcr.io' },
          { Name: 'REPOSITORY_PREFIX', Type: 'PLAINTEXT', Value: 'acme' },
          { Name: 'REGISTRY_USERNAME', Type: 'SECRETS_MANAGER', Value: 'registry-creds:username' },
          { Name: 'REGISTRY_PASSWORD', Type: 'SECRETS_MANAGER', Value: 'registry-creds:password' },
        ]),
      }),
    });
    expect(JSON.stringify(template.findResources('AWS::IAM::Policy'))).not.toContain('ecr:');
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => v.ruleName)).toEqual([]);
  });
});
