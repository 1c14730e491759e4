/**
 * The CDK app. Configuration comes from cdk.json's context key `dreambooth`; an invalid one
 * fails synth with a message naming each offending key.
 *
 * `-c config=FILE` (synth and deploy) merges FILE, JSON in the same schema, over it exactly as
 * local mode's `--config FILE` does.
 *
 * Offline synth: CDK_DISABLE_CLI_TELEMETRY=true npx cdk synth --no-notices
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfiguration } from '../infra/configuration.ts';
import { openApiDocument } from '../infra/openapi.ts';
import { DreamboothStack } from '../infra/stack.ts';

const app = new App();
const file = app.node.tryGetContext('config') as string | undefined;
const config = loadConfiguration({
  base: app.node.tryGetContext('dreambooth'),
  override: file ? (JSON.parse(readFileSync(file, 'utf8')) as unknown) : undefined,
  source: file ? `cdk.json context "dreambooth" merged with ${file}` : 'cdk.json context "dreambooth"',
});
new DreamboothStack(app, 'Dreambooth', {
  config,
  // The region the CLI deploys to (where CodeBuild lacks Lambda compute, builds use EC2 compute).
  // The CLI always sets CDK_DEFAULT_REGION, from AWS_REGION, AWS_DEFAULT_REGION or the profile's
  // region, else us-east-1 (overriding one set by hand), so the stack's ARNs name the region.
  env: process.env.CDK_DEFAULT_REGION ? { region: process.env.CDK_DEFAULT_REGION } : undefined,
  description: 'dreambooth-api: self-hosted DreamBooth training API',
});
// cdk-nag 3 checks as a validation plugin (it replaced the v2 Aspect): any unacknowledged
// finding fails synth.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
// The API's OpenAPI document beside the template: the same one the api function serves.
mkdirSync(app.outdir, { recursive: true });
writeFileSync(join(app.outdir, 'openapi.json'), JSON.stringify(openApiDocument(config), null, 2) + '\n');
