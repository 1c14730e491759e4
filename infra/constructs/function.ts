/**
 * The house Lambda function: one per folder under `lambdas/`, bundled by the local esbuild.
 */
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, LoggingFormat, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct, type IConstruct } from 'constructs';
import type { Config } from '#shared/config';
import { ENV } from '#shared/env';

export const HANDLER_NAMES = [
  'api',
  'authorizer',
  'trainer-callback',
  'start-trainer',
  'check-trainer',
  'stage-weights',
  'record',
  'notify',
  'demo-trainer',
] as const;
export type HandlerName = (typeof HANDLER_NAMES)[number];

/** Lambda's hard limit; longer configured step timeouts are capped to it. */
const LAMBDA_MAX_SECONDS = 900;

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface HouseFunctionProps {
  /** Folder under `lambdas/` holding `handler.ts`. */
  readonly name: HandlerName;
  readonly config: Config;
  /** Table and bucket every function works with. */
  readonly tableName: string;
  readonly bucketName: string;
  /** @default config.timeouts.step_seconds */
  readonly timeout?: Duration;
  /** @default 512 */
  readonly memorySize?: number;
  readonly environment?: Record<string, string>;
}

export class HouseFunction extends NodejsFunction {
  /** Finds the house functions under a scope (the local runtime dispatches Task states by name). */
  static all(scope: IConstruct): HouseFunction[] {
    return scope.node.findAll().filter((c): c is HouseFunction => c instanceof HouseFunction);
  }

  readonly handlerName: HandlerName;

  constructor(scope: Construct, id: string, props: HouseFunctionProps) {
    const logGroup = new LogGroup(scope, `${id}Logs`, {
      retention: RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Own role instead of the AWS-managed basic execution policy: it may only write its own logs.
    const role = new Role(scope, `${id}Role`, { assumedBy: new ServicePrincipal('lambda.amazonaws.com') });
    logGroup.grantWrite(role);
    const seconds = Math.min(props.config.timeouts.step_seconds, LAMBDA_MAX_SECONDS);
    super(scope, id, {
      entry: `${REPO_ROOT}lambdas/${props.name}/handler.ts`,
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: `${REPO_ROOT}package-lock.json`,
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      tracing: Tracing.ACTIVE,
      timeout: props.timeout ?? Duration.seconds(seconds),
      memorySize: props.memorySize ?? 512,
      role,
      logGroup,
      loggingFormat: LoggingFormat.JSON,
      environment: {
        [ENV.table]: props.tableName,
        [ENV.bucket]: props.bucketName,
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.ESM,
        minify: true,
        sourceMap: true,
        target: 'node22',
        forceDockerBundling: false,
        // The SDK is bundled (tree-shaken, pinned by our lock file) rather than taken from the
        // runtime: measured here it halves the cold import time (npm run bench).
        externalModules: [],
        // Bundled CommonJS dependencies call require(); ESM output needs it defined.
        banner: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
        define: {
          // Baked in rather than set as an environment variable: Lambda caps the environment
          // at 4 KB and the template catalog alone exceeds it.
          'process.env.DREAMBOOTH_CONFIG': JSON.stringify(JSON.stringify(props.config)),
        },
      },
    });
    this.handlerName = props.name;
  }
}
