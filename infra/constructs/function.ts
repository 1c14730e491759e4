/**
 * The house Lambda function: one per folder under `lambdas/`, bundled by the local esbuild.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AssetHashType, DockerImage, Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, Code, Function as LambdaFunction, LoggingFormat, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct, IConstruct } from 'constructs';
import { build, buildSync, type BuildOptions, type Metafile } from 'esbuild';
import type { Config } from '#shared/config';
import { ENV } from '#shared/env';
import { FUNCTIONS } from '../functions.ts';
import type { HandlerName } from '../handler-names.ts';
import { openApiDocument } from '../openapi.ts';

// One function per folder under lambdas/ (infra/handler-names.ts); the construct's users take
// the names from here as well.
export { HANDLER_NAMES, type HandlerName } from '../handler-names.ts';
import { HANDLER_NAMES } from '../handler-names.ts';

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
 * The S3 SDK of the functions that use it on a few paths only (lambdas/shared/s3-sdk.ts): a
 * bundle of its own, `s3-sdk<ext>` beside theirs, which they require on first use.
 */
const S3_SDK = { entry: `${REPO_ROOT}lambdas/shared/s3-sdk.ts`, out: 's3-sdk' };

/** esbuild's options for `names`, each to `<outdir>/<name><ext>` (what the stack deploys, minified), and the S3 SDK's file. */
function lambdaBuildOptions(names: readonly HandlerName[], outdir: string, config: Config, ext = '.js'): BuildOptions {
  return {
    entryPoints: [...names.map((name) => ({ in: `${REPO_ROOT}lambdas/${name}/handler.ts`, out: name })), { in: S3_SDK.entry, out: S3_SDK.out }],
    absWorkingDir: REPO_ROOT,
    outdir,
    ...(ext === '.js' ? {} : { outExtension: { '.js': ext } }),
    bundle: true,
    platform: 'node',
    logLevel: 'error',
    ...LAMBDA_BUNDLE,
    mainFields: [...LAMBDA_BUNDLE.mainFields],
    // The lazily imported S3 SDK stays out of each bundle, required from its own file when used;
    // as a require(), which loads faster than import() and its ES module loader.
    alias: { ...LAMBDA_BUNDLE.alias, '#shared/s3-sdk': `./${S3_SDK.out}${ext}` },
    external: [`./${S3_SDK.out}${ext}`],
    supported: { 'dynamic-import': false },
    // The baked values of all of them are defined for each: a bundle holds only the ones its code
    // reads (the same bytes as one run per handler, checked by test/infra/lambda-bundles.test.ts).
    define: Object.assign({}, ...names.map((name) => lambdaDefine(config, name))),
  };
}

/**
 * One handler bundled as `cdk synth` bundles it, for the benchmark and the bundle test, with the
 * S3 SDK's file beside it (`s3-sdk.js`, or `s3-sdk.cjs` beside a `.cjs` outfile).
 */
export async function bundleLambda(name: HandlerName, outfile: string, config: Config): Promise<Metafile> {
  const ext = extname(outfile) === '.cjs' ? '.cjs' : '.js';
  const { entryPoints, outdir, outExtension, ...options } = lambdaBuildOptions([name], '', config, ext);
  const [{ metafile }] = await Promise.all([
    build({ ...options, entryPoints: [`${REPO_ROOT}lambdas/${name}/handler.ts`], outfile, metafile: true }),
    build({ ...options, entryPoints: [S3_SDK.entry], outfile: s3SdkBeside(outfile) }),
  ]);
  return metafile;
}

/** Where bundleLambda writes the S3 SDK's file for `outfile`. */
export const s3SdkBeside = (outfile: string) => join(dirname(outfile), `${S3_SDK.out}${extname(outfile) === '.cjs' ? '.cjs' : '.js'}`);

/**
 * Several handlers in one esbuild run (local mode bundles every function at start), as
 * `<outdir>/<name>.cjs`, unminified and with their names kept so that stack traces read.
 */
export async function bundleLambdas(names: readonly HandlerName[], outdir: string, config: Config): Promise<Metafile> {
  const { metafile } = await build({ ...lambdaBuildOptions(names, outdir, config, '.cjs'), minify: false, keepNames: true, metafile: true });
  return metafile;
}

/**
 * The deployed bundles of one synthesis: every handler in ONE esbuild run, made when the first
 * function's asset asks, kept for the others. A run per function (what NodejsFunction does,
 * through `npx esbuild`) parsed the SDK and the shared code again for each of 17 handlers: about
 * 20 of `cdk synth`'s 30 s here. Only the last configuration's bundles are kept.
 */
let deployBundles: { key: string; files: Map<string, Uint8Array>; external: Map<string, string[]> } | null = null;

/** A function's asset: `index.js`, and the S3 SDK's file when its bundle requires it. */
function deployBundle(config: Config, name: HandlerName): Record<string, Uint8Array> {
  const key = JSON.stringify(config);
  if (deployBundles?.key !== key) {
    const { outputFiles, metafile } = buildSync({ ...lambdaBuildOptions(HANDLER_NAMES, '/bundles', config), write: false, metafile: true });
    deployBundles = {
      key,
      files: new Map(outputFiles.map((f) => [stem(f.path), f.contents])),
      external: new Map(Object.entries(metafile.outputs).map(([path, out]) => [stem(path), out.imports.filter((i) => i.external).map((i) => i.path)])),
    };
  }
  const bundle = deployBundles.files.get(name);
  if (!bundle) throw new Error(`esbuild made no bundle for ${name}`);
  const files: Record<string, Uint8Array> = { 'index.js': bundle };
  for (const path of deployBundles.external.get(name) ?? []) {
    if (!path.startsWith('./')) continue;
    const file = deployBundles.files.get(stem(path));
    if (!file) throw new Error(`${name} requires ${path}, which esbuild did not make`);
    files[path.slice(2)] = file;
  }
  return files;
}

/** `s3-sdk` of `/bundles/s3-sdk.js` or `./s3-sdk.js`. */
const stem = (path: string) => path.slice(path.lastIndexOf('/') + 1, -'.js'.length);

/** Lambda's hard limit; longer configured step timeouts are capped to it. */
const LAMBDA_MAX_SECONDS = 900;

export interface HouseFunctionProps {
  /** Folder under `lambdas/` holding `handler.ts`; its limits and needs are declared in infra/functions.ts. */
  readonly name: HandlerName;
  readonly config: Config;
}

export class HouseFunction extends LambdaFunction {
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
      // The bundle (LAMBDA_BUNDLE: the SDK bundled and tree-shaken, CommonJS, minified, no source
      // maps, which cost each cold start about 35 ms at load) as index.js.
      code: Code.fromAsset(`${REPO_ROOT}lambdas/${props.name}`, {
        // The bundle holds lambdas/shared and the SDK too: hash what is shipped, not the folder.
        assetHashType: AssetHashType.OUTPUT,
        bundling: {
          // Never used: the local esbuild always bundles (Docker is not needed to deploy).
          image: DockerImage.fromRegistry('public.ecr.aws/docker/library/node:22-slim'),
          local: {
            tryBundle(outDir) {
              mkdirSync(outDir, { recursive: true });
              for (const [file, bytes] of Object.entries(deployBundle(props.config, props.name))) writeFileSync(join(outDir, file), bytes);
              return true;
            },
          },
        },
      }),
      handler: 'index.handler',
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      tracing: Tracing.ACTIVE,
      timeout: Duration.seconds(seconds),
      memorySize: declared.memorySize ?? 512,
      role,
      logGroup,
      loggingFormat: LoggingFormat.JSON,
    });
    this.handlerName = props.name;
  }
}
