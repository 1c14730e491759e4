/**
 * The house Lambda function: one per folder under `lambdas/`, bundled by the local esbuild.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, LoggingFormat, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct, IConstruct } from 'constructs';
import { build, type Metafile } from 'esbuild';
import type { Config } from '#shared/config';
import { ENV } from '#shared/env';
import { FUNCTIONS } from '../functions.ts';
import type { HandlerName } from '../handler-names.ts';
import { openApiDocument } from '../openapi.ts';

// One function per folder under lambdas/ (infra/handler-names.ts); the construct's users take
// the names from here as well.
export { HANDLER_NAMES, type HandlerName } from '../handler-names.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * esbuild settings of every Lambda bundle (the benchmark and the bundle test build with these).
 * CommonJS output imports about 10% faster than ESM here; `module` first picks the SDK's ES
 * modules, which tree-shake; the alias swaps the SDK's credential chain for the environment
 * provider (see lambdas/shared/lambda-credentials.ts).
 */
export const LAMBDA_BUNDLE: {
  readonly format: 'cjs' | 'esm';
  readonly target: string;
  readonly minify: boolean;
  readonly mainFields: readonly string[];
  readonly alias: Readonly<Record<string, string>>;
} = {
  format: 'cjs',
  target: 'node22',
  minify: true,
  mainFields: ['module', 'main'],
  alias: { '@aws-sdk/credential-provider-node': `${REPO_ROOT}lambdas/shared/lambda-credentials.ts` },
};

/**
 * What a function has baked in rather than set as environment variables (Lambda caps the
 * environment at 4 KB and the template catalog alone exceeds it): the configuration, and for
 * the api its OpenAPI document, for the prepare step the SageMaker runner it puts in each job's
 * request channel. Local mode sets the same values as that function's variables.
 */
export function bakedEnv(config: Config, name: HandlerName): Record<string, string> {
  return {
    DREAMBOOTH_CONFIG: JSON.stringify(config),
    ...(name === 'api' ? { DREAMBOOTH_OPENAPI: JSON.stringify(openApiDocument(config)) } : {}),
    ...(name === 'prepare-training-job' ? { [ENV.runnerSource]: readFileSync(RUNNER_SOURCE_PATH, 'utf8') } : {}),
  };
}

/** The SageMaker runner (one Python file, standard library only). */
export const RUNNER_SOURCE_PATH = fileURLToPath(new URL('../../runner/dreambooth_runner.py', import.meta.url));

/** esbuild's `define` of the baked values. */
export function lambdaDefine(config: Config, name: HandlerName): Record<string, string> {
  return Object.fromEntries(Object.entries(bakedEnv(config, name)).map(([k, v]) => [`process.env.${k}`, JSON.stringify(v)]));
}

/**
 * One handler bundled as `cdk synth` bundles it, for the benchmark and the bundle test (the
 * stack passes the same settings to NodejsFunction, which runs the same esbuild).
 */
export async function bundleLambda(name: HandlerName, outfile: string, config: Config): Promise<Metafile> {
  const { metafile } = await build({
    entryPoints: [`${REPO_ROOT}lambdas/${name}/handler.ts`],
    absWorkingDir: REPO_ROOT,
    outfile,
    bundle: true,
    platform: 'node',
    logLevel: 'error',
    external: [],
    ...LAMBDA_BUNDLE,
    mainFields: [...LAMBDA_BUNDLE.mainFields],
    define: lambdaDefine(config, name),
    metafile: true,
  });
  return metafile;
}

/**
 * Several handlers in one esbuild run (local mode bundles every function at start), as
 * `<outdir>/<name>.cjs`, names kept so that stack traces read. The baked values of all of them
 * are defined for each: a bundle only holds the ones its code reads.
 */
export async function bundleLambdas(names: readonly HandlerName[], outdir: string, config: Config): Promise<Metafile> {
  const { metafile } = await build({
    entryPoints: names.map((name) => ({ in: `${REPO_ROOT}lambdas/${name}/handler.ts`, out: name })),
    absWorkingDir: REPO_ROOT,
    outdir,
    outExtension: { '.js': '.cjs' },
    bundle: true,
    platform: 'node',
    logLevel: 'error',
    external: [],
    ...LAMBDA_BUNDLE,
    mainFields: [...LAMBDA_BUNDLE.mainFields],
    define: Object.assign({}, ...names.map((name) => lambdaDefine(config, name))),
    minify: false,
    keepNames: true,
    metafile: true,
  });
  return metafile;
}

/** Lambda's hard limit; longer configured step timeouts are capped to it. */
const LAMBDA_MAX_SECONDS = 900;

export interface HouseFunctionProps {
  /** Folder under `lambdas/` holding `handler.ts`; its limits and needs are declared in infra/functions.ts. */
  readonly name: HandlerName;
  readonly config: Config;
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
    // Environment and grants come later, from the same declaration (./wiring.ts).
    const declared = FUNCTIONS[props.name];
    const seconds = Math.min(declared.timeout?.(props.config) ?? props.config.timeouts.step_seconds, LAMBDA_MAX_SECONDS);
    super(scope, id, {
      entry: `${REPO_ROOT}lambdas/${props.name}/handler.ts`,
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: `${REPO_ROOT}package-lock.json`,
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      tracing: Tracing.ACTIVE,
      timeout: Duration.seconds(seconds),
      memorySize: declared.memorySize ?? 512,
      role,
      logGroup,
      loggingFormat: LoggingFormat.JSON,
      bundling: {
        format: LAMBDA_BUNDLE.format === 'esm' ? OutputFormat.ESM : OutputFormat.CJS,
        minify: LAMBDA_BUNDLE.minify,
        // No source maps: Node's --enable-source-maps parses the map at load and costs each cold
        // start about 35 ms here. Local mode runs the TypeScript sources for readable stacks.
        sourceMap: false,
        target: LAMBDA_BUNDLE.target,
        mainFields: [...LAMBDA_BUNDLE.mainFields],
        forceDockerBundling: false,
        // The SDK is bundled (tree-shaken, pinned by our lock file) rather than taken from the
        // runtime: measured here it halves the cold import time (npm run bench).
        externalModules: [],
        esbuildArgs: Object.fromEntries(Object.entries(LAMBDA_BUNDLE.alias).map(([from, to]) => [`--alias:${from}`, to])),
        define: lambdaDefine(props.config, props.name),
      },
    });
    this.handlerName = props.name;
  }
}
