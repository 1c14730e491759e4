/**
 * `api.set_account_logging_role`: AWS::ApiGateway::Account is one setting per account and
 * region, so a stack that sets it replaces the role other stacks set. Off, the stack leaves the
 * setting alone (and its stage still logs through the role already set); either way cdk-nag
 * stays clean, with the IAM4 acknowledgement only where the role is.
 */
import { App, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig } from '#shared/config';
import { DreamboothStack } from '#infra/stack';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();

function synth(api?: Record<string, unknown>) {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new DreamboothStack(app, 'Dreambooth', { config: parseConfig(mergeConfig(cdkJson.context.dreambooth, api ? { api } : {})) });
  const template = Template.fromStack(stack);
  const acknowledged = stack.api.restApi.node.metadata
    .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
    .flatMap((m) => Object.keys(m.data as Record<string, string>));
  // The API's findings (the whole stack's are test/infra/stack.test.ts's).
  const violations = new AwsSolutionsChecks()
    .validateScope(app)
    .violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)
    .filter((v) => v.includes(' Dreambooth/Api/'));
  return { template, acknowledged, violations };
}

const PUSH_POLICY = /AmazonAPIGatewayPushToCloudWatchLogs/;

describe("the account's API Gateway logging role", () => {
  it('is set by default (a fresh account has none, and the stage logs), retained with the stack', () => {
    const { template, acknowledged, violations } = synth();
    const accounts = Object.values(template.findResources('AWS::ApiGateway::Account'));
    expect(accounts).toHaveLength(1);
    expect(accounts[0]!.DeletionPolicy).toBe('Retain');
    expect(JSON.stringify(template.findResources('AWS::IAM::Role'))).toMatch(PUSH_POLICY);
    expect(acknowledged.filter((id) => id.includes('IAM4'))).toHaveLength(1);
    expect(violations).toEqual([]);
  });

  it('is left alone with api.set_account_logging_role false: no Account resource, no role, the stage still logs', () => {
    const { template, acknowledged, violations } = synth({ set_account_logging_role: false });
    expect(template.findResources('AWS::ApiGateway::Account')).toEqual({});
    expect(JSON.stringify(template.findResources('AWS::IAM::Role'))).not.toMatch(PUSH_POLICY);
    const stage = Object.values(template.findResources('AWS::ApiGateway::Stage'))[0]!;
    expect(stage.Properties.AccessLogSetting.DestinationArn).toBeDefined();
    expect(stage.Properties.MethodSettings[0].LoggingLevel).toBe('INFO');
    expect(acknowledged.filter((id) => id.includes('IAM4'))).toEqual([]);
    expect(violations).toEqual([]);
  });

  it('refuses anything but a boolean, naming the key', () => {
    expect(() => parseConfig(mergeConfig(cdkJson.context.dreambooth, { api: { set_account_logging_role: 'no' } }))).toThrow(/dreambooth\.api\.set_account_logging_role/);
  });
});
