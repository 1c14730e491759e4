/**
 * The CDK app. Configuration comes from cdk.json's context key `dreambooth`; an invalid one
 * fails synth with a message naming each offending key.
 *
 * Offline synth: CDK_DISABLE_CLI_TELEMETRY=true npx cdk synth --no-notices
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parseConfig } from '#shared/config';
import { DreamboothStack } from '../infra/stack.ts';

const app = new App();
const config = parseConfig(app.node.tryGetContext('dreambooth'), 'cdk.json context "dreambooth"');
new DreamboothStack(app, 'Dreambooth', {
  config,
  description: 'dreambooth-api: self-hosted DreamBooth training API',
});
// cdk-nag 3 checks as a validation plugin (it replaced the v2 Aspect): any unacknowledged
// finding fails synth.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
