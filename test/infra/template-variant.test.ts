/**
 * The template variant project (infra/constructs/template-variant.ts) in the synthesized
 * template: what it runs, that its role pushes to the templates' ECR repositories only, and that
 * prediction-endpoint may start and read its builds and nothing else of CodeBuild.
 */
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig } from '#shared/config';
import { DreamboothStack } from '#infra/stack';
import { readCdkJson } from '#test-helpers/paths';

type Resources = Record<string, { Type: string; Properties: Record<string, any> }>;
interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
}

function synth(overrides: Record<string, unknown> = {}) {
  const config = parseConfig(mergeConfig(readCdkJson().context.dreambooth, overrides));
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new DreamboothStack(app, 'Dreambooth', { config, env: { region: 'eu-west-1' } });
  return { stack, resources: Template.fromStack(stack).toJSON().Resources as Resources };
}

const actionsOf = (s: Statement) => [s.Action].flat();
const text = (v: unknown) => JSON.stringify(v);

function statementsOfRole(resources: Resources, roleId: string): Statement[] {
  return Object.values(resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy' && r.Properties.Roles.some((x: { Ref?: string }) => x.Ref === roleId))
    .flatMap((r) => r.Properties.PolicyDocument.Statement as Statement[]);
}

describe('the template variant project', () => {
  let stack: DreamboothStack;
  let resources: Resources;
  const idOf = (c: { node: { defaultChild?: unknown } }) => stack.getLogicalId(c.node.defaultChild as never);

  beforeAll(() => {
    ({ stack, resources } = synth());
  });

  it("runs the trainer mirror's script in template-variant mode, on SMALL unprivileged EC2 compute", () => {
    const project = resources[idOf(stack.serving.templateVariants!.project)]!.Properties;
    expect(project.Environment.ComputeType).toBe('BUILD_GENERAL1_SMALL');
    expect(project.Environment.PrivilegedMode).toBe(false);
    expect(project.Environment.EnvironmentVariables).toContainEqual({ Name: 'MODE', Type: 'PLAINTEXT', Value: 'template-variant' });
    expect(project.Source.BuildSpec).toContain('node mirror-image.mjs');
  });

  it("pushes to the templates' repositories only", () => {
    const role = stack.getLogicalId(stack.serving.templateVariants!.project.role!.node.defaultChild as never);
    const ecr = statementsOfRole(resources, role).filter((s) => actionsOf(s).some((a) => a.startsWith('ecr:')));
    const push = ecr.find((s) => actionsOf(s).includes('ecr:PutImage'))!;
    expect(text(push.Resource)).toContain(':repository/dreambooth/templates/*');
    for (const s of ecr.filter((x) => x !== push)) expect(actionsOf(s)).toEqual(['ecr:GetAuthorizationToken']);
    const repositories = ecr.flatMap((s) => [s.Resource].flat()).filter((r) => r !== '*');
    expect(repositories).toHaveLength(1);
  });

  it('lets prediction-endpoint start and read builds of this project only, and tells it the project and repositories', () => {
    const fn = stack.serving.functions.endpoint;
    const statements = statementsOfRole(resources, stack.getLogicalId(fn.role!.node.defaultChild as never));
    const codebuild = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('codebuild:')));
    expect(codebuild).toHaveLength(1);
    expect(actionsOf(codebuild[0]!).sort()).toEqual(['codebuild:BatchGetBuilds', 'codebuild:StartBuild']);
    expect(text(codebuild[0]!.Resource)).toBe(text({ 'Fn::GetAtt': [idOf(stack.serving.templateVariants!.project), 'Arn'] }));
    // The function itself writes no registry: the build does.
    expect(statements.some((s) => actionsOf(s).some((a) => a.startsWith('ecr:')))).toBe(false);
    const vars = resources[idOf(fn)]!.Properties.Environment.Variables;
    expect(vars.TEMPLATE_VARIANT_PROJECT).toEqual({ Ref: idOf(stack.serving.templateVariants!.project) });
    expect(text(vars.TEMPLATE_REPOSITORY_PREFIX)).toContain('/dreambooth/templates');
  });

  it('is not made when models are pushed to another registry (SageMaker pulls from ECR only)', () => {
    const { stack: other, resources: r } = synth({ registry: { type: 'oci', host: 'ghcr.io/acme', credentials_secret: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:reg-AbCdEf' } });
    expect(other.serving.templateVariants).toBeUndefined();
    const fn = other.serving.functions.endpoint;
    const statements = statementsOfRole(r, other.getLogicalId(fn.role!.node.defaultChild as never));
    expect(statements.some((s) => actionsOf(s).some((a) => a.startsWith('codebuild:')))).toBe(false);
    expect(r[other.getLogicalId(fn.node.defaultChild as never)]!.Properties.Environment.Variables.TEMPLATE_VARIANT_PROJECT).toBeUndefined();
  });
});
