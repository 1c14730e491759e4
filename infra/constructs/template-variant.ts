/**
 * The template variant project: makes a template's SageMaker variant in the stack's ECR on the
 * first prediction of a weights version of it (lambdas/shared/serving/template-variant-build.ts
 * starts it, asynchronously, from prediction-endpoint). The trainer mirror's script
 * (codebuild/mirror-image, MODE=template-variant) copies the template blob to blob into
 * `<prefix>/templates/<template name>` and appends the serving adapter's layer. Its role pushes
 * to the templates' repositories only.
 */
import { Aws, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { BuildEnvironmentVariableType, BuildSpec, ComputeType, LinuxBuildImage, Project, Source } from 'aws-cdk-lib/aws-codebuild';
import { type IGrantable, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { ECR_REPOSITORY_ACTIONS, loadBuildSpec } from './build.ts';
import { mirrorScriptAsset } from './trainer-image-mirror.ts';

/** Below the models' prefix (which the endpoint role pulls from): `<prefix>/templates/<template name>`. */
export const TEMPLATES_PATH = 'templates';

export interface TemplateVariantProject {
  readonly project: Project;
  /** `<ECR host>/<prefix>/templates`. */
  readonly repositoryPrefix: string;
  /** StartBuild and BatchGetBuilds on this project only. */
  grantStart(grantee: IGrantable): void;
}

export function createTemplateVariantProject(scope: Construct, modelPrefix: string): TemplateVariantProject {
  const script = mirrorScriptAsset(scope, 'TemplateVariantScript');
  const path = `${modelPrefix}/${TEMPLATES_PATH}`;
  const project = new Project(scope, 'TemplateVariantProject', {
    description:
      "dreambooth-api: copies a template's image into ECR with the serving adapter (its SageMaker variant, for weights versions).",
    source: Source.s3({ bucket: script.bucket, path: script.s3ObjectKey }),
    buildSpec: BuildSpec.fromObjectToYaml(loadBuildSpec('mirror-image')),
    // Streams blob to blob like the trainer mirror: SMALL EC2 compute, no 15-minute cap.
    environment: { buildImage: LinuxBuildImage.STANDARD_7_0, computeType: ComputeType.SMALL, privileged: false },
    environmentVariables: { MODE: { type: BuildEnvironmentVariableType.PLAINTEXT, value: 'template-variant' } },
    timeout: Duration.minutes(60),
    queuedTimeout: Duration.minutes(30),
    logging: {
      cloudWatch: {
        logGroup: new LogGroup(scope, 'TemplateVariantLogs', { retention: RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY }),
      },
    },
  });
  const repositories = Stack.of(scope).formatArn({ service: 'ecr', resource: 'repository', resourceName: `${path}/*` });
  project.addToRolePolicy(new PolicyStatement({ actions: ECR_REPOSITORY_ACTIONS, resources: [repositories] }));
  // GetAuthorizationToken is account-wide: it takes no resource.
  project.addToRolePolicy(new PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }));
  return {
    project,
    repositoryPrefix: `${Aws.ACCOUNT_ID}.dkr.ecr.${Aws.REGION}.${Aws.URL_SUFFIX}/${path}`,
    grantStart: (grantee) =>
      grantee.grantPrincipal.addToPrincipalPolicy(
        new PolicyStatement({ actions: ['codebuild:StartBuild', 'codebuild:BatchGetBuilds'], resources: [project.projectArn] }),
      ),
  };
}
