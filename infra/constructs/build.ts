/**
 * The image build: a CodeBuild project that runs buildspecs/build-model.yml (docker build + push).
 */
import { readFileSync } from 'node:fs';
import { Aws, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import {
  BuildEnvironmentVariableType,
  BuildSpec,
  ComputeType,
  LinuxBuildImage,
  Project,
} from 'aws-cdk-lib/aws-codebuild';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { parse } from 'yaml';
import type { Config } from '#shared/config';
import { REPO_ROOT } from './function.ts';
import { PREFIX, type Storage } from './storage.ts';

export interface ModelBuildProps {
  readonly config: Config;
  readonly storage: Storage;
}

/** Push and pull actions on the model repositories; creation because repositories appear per model. */
const ECR_REPOSITORY_ACTIONS = [
  'ecr:DescribeRepositories',
  'ecr:CreateRepository',
  'ecr:BatchCheckLayerAvailability',
  'ecr:BatchGetImage',
  'ecr:GetDownloadUrlForLayer',
  'ecr:InitiateLayerUpload',
  'ecr:UploadLayerPart',
  'ecr:CompleteLayerUpload',
  'ecr:PutImage',
];

/** The repository file itself, embedded so that the deployed spec is the one the tests run. */
export function loadBuildSpec(): Record<string, unknown> {
  return parse(readFileSync(`${REPO_ROOT}buildspecs/build-model.yml`, 'utf8')) as Record<string, unknown>;
}

export class ModelBuild extends Construct {
  readonly project: Project;
  readonly logGroup: LogGroup;
  /** Host images are pushed to, e.g. `<account>.dkr.ecr.<region>.amazonaws.com` or `ghcr.io`. */
  readonly registryHost: string;
  /** Path between host and `<owner>/<name>`; may be empty. */
  readonly repositoryPrefix: string;

  constructor(scope: Construct, id: string, props: ModelBuildProps) {
    super(scope, id);
    const { config, storage } = props;
    const registry = config.registry;
    if (registry.type === 'ecr') {
      this.registryHost = `${Aws.ACCOUNT_ID}.dkr.ecr.${Aws.REGION}.${Aws.URL_SUFFIX}`;
      this.repositoryPrefix = registry.repository_prefix.replace(/\/+$/, '');
    } else if (registry.type === 'oci') {
      const [host, ...path] = registry.host.split('/');
      this.registryHost = host;
      this.repositoryPrefix = path.join('/');
    } else {
      // An image layout on disk exists only in local mode; there is no registry to name.
      this.registryHost = '';
      this.repositoryPrefix = '';
    }

    this.logGroup = new LogGroup(this, 'Logs', {
      retention: RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.project = new Project(this, 'Project', {
      description: 'dreambooth-api: bakes trained weights into a template image and pushes the model version.',
      buildSpec: BuildSpec.fromObjectToYaml(loadBuildSpec()),
      environment: {
        buildImage: LinuxBuildImage.STANDARD_7_0,
        // Weights are gigabytes: more disk and bandwidth than SMALL.
        computeType: ComputeType.MEDIUM,
        // docker build needs the Docker daemon.
        privileged: true,
      },
      environmentVariables: this.registryEnvironment(config),
      timeout: Duration.minutes(config.timeouts.build_minutes),
      queuedTimeout: Duration.hours(1),
      logging: { cloudWatch: { logGroup: this.logGroup } },
    });

    storage.grantObjects(this.project, PREFIX.staged, ['s3:GetObject']);
    if (registry.type === 'ecr') this.grantEcr();
  }

  private registryEnvironment(config: Config) {
    const plain = (value: string) => ({ type: BuildEnvironmentVariableType.PLAINTEXT, value });
    const env = {
      REGISTRY_TYPE: plain(config.registry.type),
      REGISTRY_HOST: plain(this.registryHost),
      REPOSITORY_PREFIX: plain(this.repositoryPrefix),
    };
    if (config.registry.type !== 'oci') return env;
    // Resolved by CodeBuild at build start (which also grants the read): never in the template,
    // the spec or the logs.
    const secret = config.registry.credentials_secret;
    const fromSecret = (key: string) => ({ type: BuildEnvironmentVariableType.SECRETS_MANAGER, value: `${secret}:${key}` });
    return { ...env, REGISTRY_USERNAME: fromSecret('username'), REGISTRY_PASSWORD: fromSecret('password') };
  }

  private grantEcr(): void {
    const stack = Stack.of(this);
    const repositories = stack.formatArn({
      service: 'ecr',
      resource: 'repository',
      resourceName: `${this.repositoryPrefix}/*`,
    });
    this.project.addToRolePolicy(new PolicyStatement({ actions: ECR_REPOSITORY_ACTIONS, resources: [repositories] }));
    // GetAuthorizationToken is account-wide: it takes no resource.
    this.project.addToRolePolicy(new PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }));
  }
}
