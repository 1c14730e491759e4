/**
 * The dreambooth-api stack: composes one construct per concern.
 */
import { Aws, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { PublicApi } from './constructs/api.ts';
import { ModelBuild } from './constructs/build.ts';
import { DemoTrainer } from './constructs/demo-trainer.ts';
import { HouseFunction } from './constructs/function.ts';
import { Monitoring } from './constructs/monitoring.ts';
import { Secrets } from './constructs/secrets.ts';
import { Serving } from './constructs/serving.ts';
import { Storage } from './constructs/storage.ts';
import { WebhookDelivery } from './constructs/webhook.ts';
import { TrainingWorkflow } from './constructs/workflow.ts';
import { wireFunctions } from './constructs/wiring.ts';
import { checkDeployable } from './deployable.ts';
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
  readonly serving: Serving;
  readonly api: PublicApi;
  readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: DreamboothStackProps) {
    super(scope, id, props);
    const { config } = props;
    checkDeployable(config);
    this.storage = new Storage(this, 'Storage', { config });
    this.secrets = new Secrets(this, 'Secrets', { config });
    this.build = new ModelBuild(this, 'Build', { config, storage: this.storage });
    this.webhook = new WebhookDelivery(this, 'Webhook', { config });
    this.workflow = new TrainingWorkflow(this, 'Workflow', { config, storage: this.storage, build: this.build, notify: this.webhook.notify });
    this.serving = new Serving(this, 'Serving', { config, storage: this.storage, build: this.build, notify: this.webhook.notify });
    this.api = new PublicApi(this, 'Api', { config });
    if (DemoTrainer.wanted(config)) new DemoTrainer(this, 'DemoTrainer', { config });
    // Every function's environment and grants, from its declaration (infra/functions.ts).
    wireFunctions({
      storage: this.storage,
      secrets: this.secrets,
      stateMachine: this.workflow.stateMachine,
      predictionStateMachine: this.serving.stateMachine,
      serving: this.serving,
      servingValues: this.serving.values,
      publicUrl: this.api.publicUrl,
      registryHost: this.build.registryHost,
      sagemakerJobPrefix: this.workflow.sagemaker?.jobPrefix ?? '',
      trainerImageHost: `${Aws.ACCOUNT_ID}.dkr.ecr.${Aws.REGION}.${Aws.URL_SUFFIX}`,
      buildLogs: this.build.logGroup,
      sagemaker: this.workflow.sagemaker,
      sagemakerMirrors: this.toJsonString(this.workflow.sagemaker?.mirrorRepositoryNames ?? {}),
      functions: new Map(HouseFunction.all(this).map((fn) => [fn.handlerName, fn])),
    });

    const fns = this.workflow.functions;
    this.monitoring = new Monitoring(this, 'Monitoring', {
      stateMachine: this.workflow.stateMachine,
      predictionStateMachine: this.serving.stateMachine,
      steps: { 'start trainer': fns.startTrainer, 'check trainer': fns.checkTrainer, 'stage weights': fns.stageWeights, record: fns.record, webhook: this.webhook.notify },
      notify: this.webhook.notify,
      record: fns.record,
      callback: this.api.functions.callback,
      buildProjects: [this.build.project],
      alarmTopicArn: config.monitoring.alarm_topic_arn,
    });

    this.outputs();
    acknowledgeFindings(this);
  }

  private outputs(): void {
    const out = (id: string, value: string) => new CfnOutput(this, id, { value });
    out('ApiUrl', this.api.publicUrl);
    out('StateMachineArn', this.workflow.stateMachine.stateMachineArn);
    out('PredictionStateMachineArn', this.serving.stateMachine.stateMachineArn);
    out('BucketName', this.storage.bucket.bucketName);
    out('TableName', this.storage.table.tableName);
    out('ApiTokensSecretArn', this.secrets.apiTokens.secretArn);
    out('WebhookSigningSecretArn', this.secrets.webhookSigning.secretArn);
    out('CallbackKeySecretArn', this.secrets.callbackKey.secretArn);
    out('BuildProjectName', this.build.project.projectName);
    out('DashboardName', this.monitoring.dashboard.dashboardName);
  }
}
