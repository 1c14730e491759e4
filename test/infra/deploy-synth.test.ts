/**
 * `npx cdk synth` as a user runs it — the entry `cdk deploy` synthesizes through: the CDK CLI,
 * cdk.json's app command, esbuild bundling, cdk-nag as a validation plugin — for the shipped
 * configuration and for one with every optional part (all four trainer backends, an external
 * OCI registry, an alarm topic), with no region configured and in three regions, one of them
 * without CodeBuild Lambda compute. Each must exit 0 with no AwsSolutions finding, and cfn-lint
 * must find nothing in the templates.
 *
 * The CLI sets the app's CDK_DEFAULT_REGION itself (from AWS_REGION, AWS_DEFAULT_REGION or the
 * profile's region, else us-east-1) and overrides one set by hand, so the regions are set the
 * ways users set them. HOME is an empty directory: no ~/.aws configuration reaches the CLI but
 * the one a case writes. With no region the CLI resolves us-east-1 (asserted below) and hands
 * the app exactly what AWS_REGION=us-east-1 would (bin/app.ts reads only CDK_DEFAULT_REGION), so
 * that one synth stands for both.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig } from '#shared/config';
import { LAMBDA_COMPUTE_REGIONS } from '#infra/constructs/build';
import { DreamboothStack } from '#infra/stack';
import { requireCfnLint } from '#test-helpers/capabilities';
import { cfnLint, problems } from '#test-helpers/cfn-lint';
import { ROOT } from '#test-helpers/paths';

const CDK = join(ROOT, 'node_modules', '.bin', 'cdk');
const cdkJson = JSON.parse(readFileSync(join(ROOT, 'cdk.json'), 'utf8'));

interface Region {
  label: string;
  /** What the CLI resolves it to. */
  region: string;
  env: Record<string, string>;
  /** ~/.aws/config, if the region comes from the profile. */
  awsConfig?: string;
}

const REGIONS: Region[] = [
  { label: "no region configured (the CLI's fallback, us-east-1)", region: 'us-east-1', env: {} },
  { label: 'eu-west-1 (AWS_REGION)', region: 'eu-west-1', env: { AWS_REGION: 'eu-west-1' } },
  { label: "ca-central-1, without CodeBuild Lambda compute (the profile's region in ~/.aws/config)", region: 'ca-central-1', env: {}, awsConfig: '[default]\nregion = ca-central-1\n' },
];

/** Every optional part at once, merged over cdk.json with `-c config=FILE` (the topic in the stack's region, where alarms can reach it). */
const combined = (region: string) => ({
  trainers: {
    'my-cog': { backend: 'cog', url: 'https://gpu-box.example.com:5000', upload_token_secret: 'dreambooth/my-cog-upload-token', webhook_auth_token_secret: 'dreambooth/my-cog-webhook-token' },
    replicate: { backend: 'replicate', api_token_secret: 'dreambooth/replicate-api-token', replicate_model: 'replicate/dreambooth' },
    'dreambooth-gpu': {
      backend: 'sagemaker',
      image: 'r8.im/replicate/dreambooth@sha256:cd3f925f7ab21afaef7d45224790eedbb837eeac40d22e8fefe015489ab644aa',
      source_credentials_secret: 'dreambooth/r8-credentials',
    },
  },
  registry: { type: 'oci', host: 'ghcr.io/acme', credentials_secret: 'dreambooth/registry-credentials' },
  monitoring: { alarm_topic_arn: `arn:aws:sns:${region}:123456789012:dreambooth-alarms` },
});

type ConfigName = 'shipped' | 'combined';

interface Synth {
  code: number;
  output: string;
  template: string;
  outdir: string;
}

/**
 * The CLI runs the shipped configuration in every region, and the combined one once (with its
 * bundles: the sagemaker backend adds functions and a build script). The combined configuration
 * in the other regions is synthesized in-process below, through the same stack, cdk-nag and
 * cfn-lint (the infra setup lints every template a test synthesizes): a CLI synth costs ~45
 * CPU-seconds, and what the CLI adds (bundling, the region it resolves) does not depend on the
 * configuration.
 */
const CASES = [...REGIONS.map((region) => ({ config: 'shipped' as ConfigName, region })), { config: 'combined' as ConfigName, region: REGIONS[0]! }];
/** CLI synths at once: each bundles and validates on one core, and this machine may have two. */
const CONCURRENT_SYNTHS = 2;

describe('npx cdk synth', () => {
  let work: string;
  const runs = new Map<number, Promise<Synth>>();
  const queue = limit(CONCURRENT_SYNTHS);
  /** Case i's synth, started on first use; the next ones start too, so that the pool stays busy while tests wait in order. */
  const synthOf = (i: number): Promise<Synth> => {
    for (let j = i; j < Math.min(i + CONCURRENT_SYNTHS, CASES.length); j++) {
      if (!runs.has(j)) runs.set(j, queue(() => cdkSynth(join(work, String(j)), CASES[j]!.config, CASES[j]!.region)));
    }
    return runs.get(i)!;
  };

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'cdk-synth-'));
  });
  afterAll(async () => {
    await Promise.all(runs.values());
    rmSync(work, { recursive: true, force: true });
  });

  CASES.forEach(({ config, region }, i) => {
    it(`exits 0 without an AwsSolutions finding: ${config} configuration, ${region.label}`, async () => {
      const run = await synthOf(i);
      expect(run.output).not.toMatch(/AwsSolutions/);
      expect(run.code, run.output.slice(-4000)).toBe(0);
      // The stack is the region's: its ARNs name it, and only where CodeBuild offers Lambda compute is there a Lambda-compute project.
      expect(run.template).toContain(`:${region.region}:`);
      expect(run.template.includes('BUILD_LAMBDA_'), 'a Lambda-compute build project').toBe(LAMBDA_COMPUTE_REGIONS.includes(region.region));
      // The OpenAPI document is a build artifact beside the template.
      const openapi = JSON.parse(readFileSync(join(run.outdir, 'openapi.json'), 'utf8'));
      expect(openapi).toMatchObject({ openapi: '3.1.0', paths: { '/v1/trainings': { post: { operationId: 'createSeedTraining' } } } });
      if (config === 'combined') {
        expect(run.template).toContain(combined(region.region).monitoring.alarm_topic_arn);
        expect(JSON.stringify(JSON.parse(run.template))).toContain('{"Name":"REGISTRY_HOST","Type":"PLAINTEXT","Value":"ghcr.io"}');
      }
    }, 900_000);
  });

  it('covers a region without CodeBuild Lambda compute with its last region', () => {
    expect(LAMBDA_COMPUTE_REGIONS).not.toContain(REGIONS.at(-1)!.region);
  });

  const lint = requireCfnLint('linting the CLI-synthesized templates with cfn-lint');
  it.skipIf(lint.skip)('cfn-lint finds nothing in the templates, each linted for its region', async () => {
    const synths = await Promise.all(CASES.map(async ({ region }, i) => ({ region: region.region, run: await synthOf(i) })));
    const byRegion = new Map<string, string[]>();
    for (const { region, run } of synths) byRegion.set(region, [...(byRegion.get(region) ?? []), join(run.outdir, 'Dreambooth.template.json')]);
    const lints = limit(CONCURRENT_SYNTHS);
    const findings = await Promise.all([...byRegion].map(([region, files]) => lints(() => cfnLint(files, region))));
    expect(problems(findings.flat())).toEqual([]);
  }, 900_000);
});

describe('the combined configuration in every region', () => {
  it.each(REGIONS.slice(1))('synthesizes without an AwsSolutions finding: $label', ({ region }) => {
    const config = parseConfig(mergeConfig(cdkJson.context.dreambooth, combined(region)));
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    new DreamboothStack(app, 'Dreambooth', { config, env: { region } });
    const template = JSON.stringify(app.synth().getStackByName('Dreambooth').template);
    expect(template).toContain(`:${region}:`);
    expect(template.includes('BUILD_LAMBDA_'), 'a Lambda-compute build project').toBe(LAMBDA_COMPUTE_REGIONS.includes(region));
    expect(template).toContain(combined(region).monitoring.alarm_topic_arn);
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)).toEqual([]);
  });
});

describe('an account given to the stack (env.account)', () => {
  it('keeps every acknowledgement: literal account ids in the ARNs match the reviewed shapes too', () => {
    const config = parseConfig(mergeConfig(cdkJson.context.dreambooth, combined('eu-west-1')));
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    new DreamboothStack(app, 'Dreambooth', { config, env: { region: 'eu-west-1', account: '123456789012' } });
    const template = JSON.stringify(app.synth().getStackByName('Dreambooth').template);
    expect(template).toContain(':eu-west-1:123456789012:');
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)).toEqual([]);
  });
});

/** One CLI synth into `outdir`: the CLI's own exit code and everything it printed. */
function cdkSynth(outdir: string, config: ConfigName, region: Region): Promise<Synth> {
  const home = join(outdir, 'home');
  mkdirSync(home, { recursive: true });
  if (region.awsConfig) {
    mkdirSync(join(home, '.aws'));
    writeFileSync(join(home, '.aws', 'config'), region.awsConfig);
  }
  const args = ['synth', '--no-notices', '-o', join(outdir, 'cdk.out')];
  if (config === 'combined') {
    const file = join(outdir, 'combined.json');
    writeFileSync(file, JSON.stringify(combined(region.region)));
    args.push('-c', `config=${file}`);
  }
  return new Promise((resolve) => {
    execFile(CDK, args, { cwd: ROOT, env: cliEnv(home, region), maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      const cdkOut = join(outdir, 'cdk.out');
      let template = '';
      try {
        template = readFileSync(join(cdkOut, 'Dreambooth.template.json'), 'utf8');
      } catch {
        // No template: the exit code and the output say why.
      }
      // With CI set the CLI prints its messages to stdout, else to stderr: both are searched.
      resolve({ code: error ? Number(error.code ?? 1) : 0, output: `${stderr}\n${stdout}`, template, outdir: cdkOut });
    });
  });
}

/** The test's environment without any AWS or CDK setting, offline, with `region`'s settings and an empty HOME. */
function cliEnv(home: string, region: Region): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(AWS_|CDK_)/.test(k) || k === 'AWS_CA_BUNDLE') env[k] = v;
  return {
    ...env,
    HOME: home,
    CDK_DISABLE_CLI_TELEMETRY: 'true',
    // cdk.json's app runs through npx, whose update check would ask the npm registry.
    NPM_CONFIG_UPDATE_NOTIFIER: 'false',
    // No instance metadata service is asked for credentials; the CLI needs none to synthesize.
    AWS_EC2_METADATA_DISABLED: 'true',
    ...region.env,
  };
}

/** Runs at most `n` of the functions given to it at once, in the order given. */
function limit(n: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  return <T>(fn: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const start = () => {
        active++;
        fn()
          .then(resolve, reject)
          .finally(() => {
            active--;
            waiting.shift()?.();
          });
      };
      if (active < n) start();
      else waiting.push(start);
    });
}
