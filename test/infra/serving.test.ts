/**
 * The Serving construct in the synthesized template: the prediction state machine and its
 * steps, the topics and their subscription, the daily sweep, and the IAM of the endpoints and
 * of the functions that make, invoke and end them, each scoped to this stack's names.
 */
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig } from '#shared/config';
import { DreamboothStack } from '#infra/stack';
import { readCdkJson } from '#test-helpers/paths';

type Resources = Record<string, { Type: string; Properties: Record<string, any> }>;
interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, unknown>;
}

function synth(overrides: Record<string, unknown> = {}) {
  const config = parseConfig(mergeConfig(readCdkJson().context.dreambooth, overrides));
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new DreamboothStack(app, 'Dreambooth', { config, env: { region: 'eu-west-1' } });
  return { app, stack, template: Template.fromStack(stack) };
}

const actionsOf = (s: Statement) => [s.Action].flat();
const text = (v: unknown) => JSON.stringify(v);

describe('Serving', () => {
  let stack: DreamboothStack;
  let template: Template;
  let resources: Resources;
  let prefix: string;

  /** Every statement of the policies attached to a role (by its logical id). */
  const statementsOfRole = (roleId: string): Statement[] =>
    Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && r.Properties.Roles.some((x: { Ref?: string }) => x.Ref === roleId))
      .flatMap((r) => r.Properties.PolicyDocument.Statement as Statement[]);
  const statementsOf = (fn: { role?: { node: { defaultChild?: unknown } } }) => statementsOfRole(stack.getLogicalId(fn.role!.node.defaultChild as never));

  beforeAll(() => {
    ({ stack, template } = synth());
    resources = template.toJSON().Resources;
    prefix = stack.serving.endpointPrefix;
  });

  it('is a Standard state machine at Serving/StateMachine whose Tasks all have a timeout, in JSONPath', () => {
    expect(stack.serving.stateMachine.node.path).toBe('Dreambooth/Serving/StateMachine');
    const id = stack.getLogicalId(stack.serving.stateMachine.node.defaultChild as never);
    const machine = resources[id]!;
    expect(machine.Properties.StateMachineType).toBe('STANDARD');
    const asl = JSON.parse(stack.resolve(machine.Properties.DefinitionString)['Fn::Join'][1].map((p: unknown) => (typeof p === 'string' ? p : 'X')).join(''));
    expect(asl.QueryLanguage ?? 'JSONPath').toBe('JSONPath');
    expect(asl.StartAt).toBe('Make sure the endpoint is ready');
    const tasks = Object.entries(asl.States as Record<string, { Type: string; TimeoutSeconds?: number; Resource?: string }>).filter(([, s]) => s.Type === 'Task');
    expect(tasks.map(([n]) => n).sort()).toEqual(
      [
        'Make sure the endpoint is ready',
        "Send the request and wait for the endpoint's answer",
        'Store the outputs',
        'Send the completion webhook',
        'Record the failure',
        'Send the failure webhook',
      ].sort(),
    );
    for (const [, s] of tasks) expect(s.TimeoutSeconds).toBeGreaterThan(0);
    const send = asl.States["Send the request and wait for the endpoint's answer"];
    expect(send.Resource).toContain('lambda:invoke.waitForTaskToken');
    expect(send.Parameters.Payload['task_token.$']).toBe('$$.Task.Token');
    // The wait outlasts the queue's time to live and the prediction's own time limit.
    expect(send.TimeoutSeconds).toBeGreaterThan(6 * 3600 + 3600);
    expect(asl.States['Is the endpoint ready?'].Default).toBe('Wait for the endpoint');
    expect(asl.States['Wait for the endpoint'].Next).toBe('Make sure the endpoint is ready');
    expect(asl.States['Send the completion webhook'].Parameters).toEqual({ 'prediction_id.$': '$.prediction_id', event: 'completed' });
  });

  it('has two encrypted, TLS-only topics, each subscribed by prediction-notified', () => {
    template.resourceCountIs('AWS::SNS::Topic', 2);
    template.allResourcesProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    const notified = stack.getLogicalId(stack.serving.functions.notified.node.defaultChild as never);
    const subs = Object.values(resources).filter((r) => r.Type === 'AWS::SNS::Subscription');
    expect(subs).toHaveLength(2);
    for (const s of subs) {
      expect(s.Properties.Protocol).toBe('lambda');
      expect(text(s.Properties.Endpoint)).toContain(notified);
    }
    const policies = Object.values(resources).filter((r) => r.Type === 'AWS::SNS::TopicPolicy');
    expect(text(policies)).toContain('aws:SecureTransport');
  });

  it('sweeps idle endpoints daily through prediction-endpoint', () => {
    const endpointFn = stack.getLogicalId(stack.serving.functions.endpoint.node.defaultChild as never);
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 day)',
      Targets: Match.arrayWith([Match.objectLike({ Arn: { 'Fn::GetAtt': [endpointFn, 'Arn'] }, Input: JSON.stringify({ action: 'sweep' }) })]),
    });
  });

  it("gives the endpoint role only the prediction objects, the model repositories, the topics and its logs", () => {
    const role = stack.getLogicalId(stack.serving.endpointRole.node.defaultChild as never);
    expect(text(resources[role]!.Properties.AssumeRolePolicyDocument)).toContain('sagemaker.amazonaws.com');
    const statements = statementsOfRole(role);
    const s3 = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')));
    expect(s3.map((s) => [actionsOf(s), text(s.Resource)])).toEqual([
      [['s3:GetObject'], expect.stringContaining('/predictions/*/request.json')],
      [['s3:PutObject', 's3:AbortMultipartUpload'], expect.stringContaining('/predictions/*.out')],
    ]);
    const ecr = statements.find((s) => actionsOf(s).includes('ecr:BatchGetImage'))!;
    expect(text(ecr.Resource)).toContain(':repository/dreambooth/*');
    const publish = statements.filter((s) => actionsOf(s).includes('sns:Publish'));
    expect(publish.flatMap((s) => [s.Resource].flat())).toHaveLength(2);
    const logs = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('logs:')));
    for (const s of logs) expect(text(s.Resource)).toContain(`/aws/sagemaker/Endpoints/${prefix}*`);
    for (const s of statements) expect(actionsOf(s).some((a) => a === '*' || a.endsWith(':*'))).toBe(false);
  });

  it('lets the endpoint role read no weights: predict signs their URL with its own s3:GetObject on weights/*', () => {
    const endpointRole = statementsOfRole(stack.getLogicalId(stack.serving.endpointRole.node.defaultChild as never));
    const reads = endpointRole.filter((s) => actionsOf(s).some((a) => a === 's3:GetObject' || a === 's3:Get*' || a === 's3:*'));
    expect(reads.length).toBeGreaterThan(0);
    for (const s of reads) {
      expect(text(s.Resource)).not.toContain('/weights/');
      expect(text(s.Resource)).toContain('/predictions/');
    }
    const predictReads = statementsOf(stack.serving.functions.predict).filter((s) => actionsOf(s).includes('s3:GetObject'));
    expect(predictReads.some((s) => text(s.Resource).includes('/weights/*'))).toBe(true);
  });

  it("scopes prediction-endpoint's SageMaker, alarm and PassRole rights to the stack's endpoints", () => {
    const statements = statementsOf(stack.serving.functions.endpoint);
    const sm = statements.find((s) => actionsOf(s).includes('sagemaker:CreateEndpoint'))!;
    const arns = [sm.Resource].flat().map(text);
    expect(arns).toHaveLength(3);
    for (const kind of ['model', 'endpoint-config', 'endpoint']) expect(arns.some((a) => a.includes(`:${kind}/${prefix}*`))).toBe(true);
    const pass = statements.find((s) => actionsOf(s).includes('iam:PassRole'))!;
    expect(pass.Condition).toEqual({ StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } });
    expect(text(pass.Resource)).toContain(stack.getLogicalId(stack.serving.endpointRole.node.defaultChild as never));
    const alarms = statements.find((s) => actionsOf(s).includes('cloudwatch:PutMetricAlarm'))!;
    expect(text(alarms.Resource)).toContain(`:alarm:${prefix}*`);
    const slr = statements.find((s) => actionsOf(s).includes('iam:CreateServiceLinkedRole'))!;
    expect(text(slr.Resource)).toContain('AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint');
    expect(slr.Condition).toEqual({ StringLike: { 'iam:AWSServiceName': 'sagemaker.application-autoscaling.amazonaws.com' } });
    // No S3 rights: the endpoint reads and writes the objects with its own role.
    expect(statements.some((s) => actionsOf(s).some((a) => a.startsWith('s3:')))).toBe(false);
  });

  it('lets predict invoke only the stack endpoints, and prediction-notified only end waits', () => {
    const predict = statementsOf(stack.serving.functions.predict);
    const invoke = predict.find((s) => actionsOf(s).includes('sagemaker:InvokeEndpointAsync'))!;
    expect(text(invoke.Resource)).toContain(`:endpoint/${prefix}*`);
    expect(predict.some((s) => actionsOf(s).includes('sagemaker:CreateEndpoint'))).toBe(false);
    const notified = statementsOf(stack.serving.functions.notified).flatMap(actionsOf);
    expect(notified).toEqual(expect.arrayContaining(['states:SendTaskSuccess', 'states:SendTaskFailure', 'dynamodb:GetItem']));
    expect(notified).not.toContain('dynamodb:PutItem');
    expect(notified.some((a) => a.startsWith('sagemaker:') || a.startsWith('s3:'))).toBe(false);
  });

  it("lets the state machine invoke only its own functions, and predict invoke only notify (the start webhook)", () => {
    const sm = stack.serving.stateMachine;
    const statements = statementsOf(sm);
    const logicalIdOf = (fn: { node: { defaultChild?: unknown } }) => stack.getLogicalId(fn.node.defaultChild as never);
    const own = [...Object.values(stack.serving.functions), stack.webhook.notify].map(logicalIdOf);
    const invoke = statements.filter((s) => actionsOf(s).includes('lambda:InvokeFunction'));
    expect(invoke.length).toBeGreaterThan(0);
    const invoked = new Set(invoke.flatMap((s) => [s.Resource].flat()).map((r) => text(r).match(/"Fn::GetAtt":\["([^"]+)"/)?.[1]));
    expect([...invoked].sort()).toEqual([...new Set(own)].filter((id) => id !== logicalIdOf(stack.serving.functions.notified)).sort());
    expect(statements.flatMap(actionsOf).filter((a) => !a.startsWith('lambda:') && !a.startsWith('logs:') && !a.startsWith('xray:'))).toEqual([]);
    const predictInvokes = statementsOf(stack.serving.functions.predict).filter((s) => actionsOf(s).includes('lambda:InvokeFunction'));
    expect([...new Set(predictInvokes.flatMap((s) => [s.Resource].flat()).map((r) => text(r).match(/"Fn::GetAtt":\["([^"]+)"/)?.[1]))]).toEqual([logicalIdOf(stack.webhook.notify)]);
  });

  it('gives the serving functions their variables', () => {
    const env = (fn: { node: { defaultChild?: unknown } }) => resources[stack.getLogicalId(fn.node.defaultChild as never)]!.Properties.Environment.Variables;
    const vars = env(stack.serving.functions.endpoint);
    expect(vars.SAGEMAKER_ENDPOINT_PREFIX).toBe(prefix);
    for (const name of ['SAGEMAKER_ENDPOINT_ROLE_ARN', 'PREDICTION_SUCCESS_TOPIC_ARN', 'PREDICTION_ERROR_TOPIC_ARN', 'PREDICTION_OUTPUT_PATH']) expect(vars[name]).toBeDefined();
    expect(text(vars.PREDICTION_OUTPUT_PATH)).toContain('/predictions/');
    expect(env(stack.serving.functions.predict).BUCKET_NAME).toBeDefined();
  });

  it('pulls from no ECR repository when models are pushed to another registry', () => {
    const { stack: other, template: t } = synth({ registry: { type: 'oci', host: 'ghcr.io/acme', credentials_secret: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:reg-AbCdEf' } });
    const role = other.getLogicalId(other.serving.endpointRole.node.defaultChild as never);
    const statements = Object.values(t.toJSON().Resources as Resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && r.Properties.Roles.some((x: { Ref?: string }) => x.Ref === role))
      .flatMap((r) => r.Properties.PolicyDocument.Statement as Statement[]);
    expect(statements.some((s) => actionsOf(s).some((a) => a.startsWith('ecr:')))).toBe(false);
  });

  it('passes cdk-nag (AwsSolutions) with nothing new unacknowledged', () => {
    const { app } = synth();
    const report = new AwsSolutionsChecks().validateScope(app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)).toEqual([]);
  });
});
