/**
 * The dreambooth-api stack: composes one construct per concern.
 */
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { ENV } from '#shared/env';
import { PublicApi } from './constructs/api.ts';
import { ModelBuild } from './constructs/build.ts';
import { DemoTrainer } from './constructs/demo-trainer.ts';
import { Monitoring } from './constructs/monitoring.ts';
import { Secrets } from './constructs/secrets.ts';
import { Storage } from './constructs/storage.ts';
import { WebhookDelivery } from './constructs/webhook.ts';
import { TrainingWorkflow } from './constructs/workflow.ts';
import { acknowledgeFindings } from './nag.ts';

export interface DreamboothStackProps extends StackProps {
  readonly config: Config;
}

export class DreamboothStack extends Stack {
  readonly storage: Storage;
  readonly secrets: Secrets;
  readonly build: ModelBuild;
  readonly webhook: WebhookDelivery;
  readonly workflow: TrainingWorkflow;
  readonly api: PublicApi;
  readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: DreamboothStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.storage = new Storage(this, 'Storage', { config });
    this.secrets = new Secrets(this, 'Secrets', { config });
    this.build = new ModelBuild(this, 'Build', { config, storage: this.storage });
    this.webhook = new WebhookDelivery(this, 'Webhook', { config, storage: this.storage, secrets: this.secrets });
    this.workflow = new TrainingWorkflow(this, 'Workflow', {
      config,
      storage: this.storage,
      secrets: this.secrets,
      build: this.build,
      notify: this.webhook.notify,
    });
    this.api = new PublicApi(this, 'Api', {
      config,
      storage: this.storage,
      secrets: this.secrets,
      workflow: this.workflow,
      notify: this.webhook.notify,
    });
    if (DemoTrainer.wanted(config)) {
      const { startTrainer, checkTrainer } = this.workflow.functions;
      new DemoTrainer(this, 'DemoTrainer', { config, storage: this.storage, starter: startTrainer, others: [checkTrainer, this.api.functions.api] });
    }
    // The steps that see a run start, log or produce its version send those webhook events.
    const { startTrainer, checkTrainer, record } = this.workflow.functions;
    for (const fn of [startTrainer, checkTrainer, record, this.api.functions.callback]) {
      this.webhook.notify.grantInvoke(fn);
      fn.addEnvironment(ENV.notifyFunction, this.webhook.notify.functionName);
    }
    // Every function that builds a trainer backend reads its secret: the callback (to verify a
    // signature), the api (to forward a cancel), stage-weights (to download with a token).
    for (const secret of this.secrets.trainerSecrets) {
      for (const fn of [this.api.functions.callback, this.api.functions.api, this.workflow.functions.stageWeights]) secret.grantRead(fn);
    }
    // Known only once the API exists; the trainer's callback URL is built on it.
    this.workflow.functions.startTrainer.addEnvironment(ENV.publicUrl, this.api.publicUrl);

    const fns = this.workflow.functions;
    this.monitoring = new Monitoring(this, 'Monitoring', {
      stateMachine: this.workflow.stateMachine,
      steps: { 'start trainer': fns.startTrainer, 'check trainer': fns.checkTrainer, 'stage weights': fns.stageWeights, record: fns.record, webhook: this.webhook.notify },
      notify: this.webhook.notify,
      record: fns.record,
      callback: this.api.functions.callback,
      buildProjects: [this.build.project],
    });

    this.outputs();
    acknowledgeFindings(this);
  }

  private outputs(): void {
    const out = (id: string, value: string) => new CfnOutput(this, id, { value });
    out('ApiUrl', this.api.publicUrl);
    out('StateMachineArn', this.workflow.stateMachine.stateMachineArn);
    out('BucketName', this.storage.bucket.bucketName);
    out('TableName', this.storage.table.tableName);
    out('ApiTokensSecretArn', this.secrets.apiTokens.secretArn);
    out('WebhookSigningSecretArn', this.secrets.webhookSigning.secretArn);
    out('CallbackKeySecretArn', this.secrets.callbackKey.secretArn);
    out('BuildProjectName', this.build.project.projectName);
    out('DashboardName', this.monitoring.dashboard.dashboardName);
  }
}
