/** The operator's view: dashboard, alarms, and the metric filters behind them. */
import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { LOG_MESSAGES } from '#shared/log-messages';
import { parseConfig } from '#shared/config';
import { DreamboothStack } from '#infra/stack';
import { FAILED_PREDICTIONS_THRESHOLD } from '#infra/constructs/monitoring';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();
let stack: DreamboothStack;
let resources: Record<string, any>;

beforeAll(() => {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  stack = new DreamboothStack(app, 'Dreambooth', { config: parseConfig(cdkJson.context.dreambooth) });
  resources = Template.fromStack(stack).toJSON().Resources;
});

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const logicalId = (c: { node: { defaultChild?: unknown } }) => stack.getLogicalId(c.node.defaultChild as never);

describe('monitoring', () => {
  it('has a dashboard with executions by status, step durations, webhook deliveries and build minutes', () => {
    const [[, dashboard]] = ofType('AWS::CloudWatch::Dashboard') as [[string, any]];
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const title of ['Executions by status', 'Predictions by status', 'Step durations', 'Webhook deliveries', 'Build minutes']) expect(body).toContain(title);
    for (const metric of ['ExecutionsSucceeded', 'ExecutionsFailed', 'ExecutionsAborted', 'WebhooksDelivered', 'WebhooksGivenUp']) expect(body).toContain(metric);
  });

  it('counts deliveries, give-ups and refused callbacks from the right log groups', () => {
    const filters = Object.fromEntries(ofType('AWS::Logs::MetricFilter').map(([, r]) => [r.Properties.MetricTransformations[0].MetricName, r.Properties]));
    const group = (fn: { logGroup: { node: { defaultChild?: unknown } } }) => ({ Ref: logicalId(fn.logGroup) });
    expect(filters.WebhooksDelivered.LogGroupName).toEqual(group(stack.webhook.notify));
    expect(filters.WebhooksDelivered.FilterPattern).toContain('$.delivered IS TRUE');
    expect(filters.WebhooksGivenUp.LogGroupName).toEqual(group(stack.workflow.functions.record));
    expect(filters.WebhooksGivenUp.FilterPattern).toContain('recorded webhook_given_up');
    expect(filters.CallbacksRefused.LogGroupName).toEqual(group(stack.api.functions.callback));
    expect(filters.CallbacksRefused.FilterPattern).toContain('$.status >= 400');
  });

  it('matches the very messages the handlers log (one constant each)', () => {
    const filters = Object.fromEntries(ofType('AWS::Logs::MetricFilter').map(([, r]) => [r.Properties.MetricTransformations[0].MetricName, r.Properties.FilterPattern as string]));
    const logged = (m: string) => `$.message = ${JSON.stringify(m)}`;
    expect(filters.WebhooksDelivered).toContain(logged(LOG_MESSAGES.webhook));
    expect(filters.WebhookAttemptsFailed).toContain(logged(LOG_MESSAGES.webhookNotDelivered));
    expect(filters.WebhooksGivenUp).toContain(logged(LOG_MESSAGES.recorded('webhook_given_up')));
    expect(filters.CallbacksRefused).toContain(logged(LOG_MESSAGES.trainerCallback));
    // The handlers import the same constants (a reworded literal there would not).
    for (const [file, key] of [['notify', 'webhook'], ['notify', 'webhookNotDelivered'], ['trainer-callback', 'trainerCallback'], ['record', 'recorded']] as const) {
      expect(readFileSync(new URL(`../../lambdas/${file}/handler.ts`, import.meta.url), 'utf8'), `${file} ${key}`).toContain(`LOG_MESSAGES.${key}`);
    }
  });

  it('alarms on failed executions, webhooks given up and callback 4xx spikes', () => {
    const alarms = ofType('AWS::CloudWatch::Alarm').map(([, r]) => r.Properties);
    const failed = alarms.find((a) => a.MetricName === 'ExecutionsFailed');
    expect(failed).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', Namespace: 'AWS/States' });
    expect(failed.Dimensions[0].Value).toEqual({ Ref: logicalId(stack.workflow.stateMachine) });
    const predictions = alarms.find((a) => a.MetricName === 'ExecutionsFailed' && a.Dimensions[0].Value.Ref === logicalId(stack.serving.stateMachine));
    expect(predictions).toMatchObject({ Threshold: FAILED_PREDICTIONS_THRESHOLD, ComparisonOperator: 'GreaterThanOrEqualToThreshold', Namespace: 'AWS/States' });
    expect(alarms.find((a) => a.MetricName === 'WebhooksGivenUp')).toMatchObject({ Threshold: 1, Namespace: 'Dreambooth' });
    expect(alarms.find((a) => a.MetricName === 'CallbacksRefused')).toMatchObject({ Threshold: 10, Namespace: 'Dreambooth' });
  });
});

describe('alarm actions', () => {
  const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:dreambooth-alarms';
  const synth = (monitoring: object) => {
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const s = new DreamboothStack(app, 'Dreambooth', { config: parseConfig({ ...cdkJson.context.dreambooth, monitoring }) });
    return { stack: s, template: Template.fromStack(s) };
  };

  it('tells the configured topic when each alarm fires and when it clears (the failed predictions one too)', () => {
    const alarms = Object.values(synth({ alarm_topic_arn: TOPIC }).template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms).toHaveLength(4);
    for (const a of alarms) expect(a.Properties).toMatchObject({ AlarmActions: [TOPIC], OKActions: [TOPIC] });
  });

  it('warns at synth that nobody is told when no topic is configured', () => {
    const { stack: s, template } = synth({});
    for (const a of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) expect(a.Properties.AlarmActions).toBeUndefined();
    const warnings = s.node.findAll().flatMap((c) => c.node.metadata).filter((m) => m.type === 'aws:cdk:warning');
    expect(warnings.map((w) => String(w.data))).toContainEqual(expect.stringContaining('monitoring.alarm_topic_arn'));
  });

  it('refuses a topic that is not an SNS ARN', () => {
    expect(() => parseConfig({ ...cdkJson.context.dreambooth, monitoring: { alarm_topic_arn: 'alarms@example.com' } })).toThrow(/alarm_topic_arn/);
  });
});
