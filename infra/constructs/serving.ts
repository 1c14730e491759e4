/**
 * Serving a version: one prediction is one execution of a Standard state machine, written like
 * the training workflow (./workflow.ts: JSONPath only, every Task with a timeout, sentences for
 * names). The endpoint is made on demand (prediction-endpoint), the request is sent and the
 * state machine waits on a task token (predict) until SageMaker's notification reaches
 * prediction-notified through the success or error topic, then the outputs are stored
 * (record-prediction) and the webhook sent (notify). A daily rule deletes idle endpoints.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Rule, RuleTargetInput, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import type { IGrantable, Role } from 'aws-cdk-lib/aws-iam';
import { Alias } from 'aws-cdk-lib/aws-kms';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { LambdaSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import {
  Choice,
  Condition,
  DefinitionBody,
  Errors,
  Fail,
  IntegrationPattern,
  JsonPath,
  LogLevel,
  type RetryProps,
  type State,
  StateMachine,
  StateMachineType,
  Succeed,
  TaskInput,
  type TaskStateBase,
  Timeout,
  Wait,
  WaitTime,
} from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { PREDICTIONS_PREFIX } from '#shared/predictions/record';
import { REQUEST_TTL_SECONDS } from '#shared/serving/steps';
import type { ServingGrantables, ServingValues } from '../needs.ts';
import type { ModelBuild } from './build.ts';
import { HouseFunction, type HandlerName } from './function.ts';
import { TRANSIENT_RETRY, webhookRetry } from './retries.ts';
import { createEndpointRole, grantEndpoints, grantInvoke } from './serving-iam.ts';
import type { Storage } from './storage.ts';
import { createTemplateVariantProject, type TemplateVariantProject } from './template-variant.ts';

export interface ServingProps {
  readonly config: Config;
  readonly storage: Storage;
  /** Where model images are pushed: the endpoint role pulls from its ECR repositories. */
  readonly build: Pick<ModelBuild, 'repositoryPrefix'>;
  readonly notify: HouseFunction;
}

function guarded<T extends TaskStateBase>(task: T, onError: State, retries: RetryProps[] = [TRANSIENT_RETRY]): T {
  for (const retry of retries) task.addRetry(retry);
  task.addCatch(onError, { errors: [Errors.ALL], resultPath: '$.error' });
  return task;
}

const predictionId = JsonPath.stringAt('$.prediction_id');

export class Serving extends Construct implements ServingGrantables {
  readonly stateMachine: StateMachine;
  readonly logGroup: LogGroup;
  readonly endpointRole: Role;
  /** Endpoint, model, endpoint configuration and alarm names start with it; IAM is scoped to it. */
  readonly endpointPrefix: string;
  readonly successTopic: Topic;
  readonly errorTopic: Topic;
  readonly functions: Record<'endpoint' | 'predict' | 'notified' | 'record', HouseFunction>;
  readonly sweep: Rule;
  /** The functions' values (their `sagemaker-endpoints` need). */
  readonly values: ServingValues;
  /** Makes templates' SageMaker variants in ECR (weights versions); only with an ECR model registry. */
  readonly templateVariants?: TemplateVariantProject;
  private readonly config: Config;

  constructor(scope: Construct, id: string, props: ServingProps) {
    super(scope, id);
    this.config = props.config;
    // Short and stable per stack: 63 characters hold it and most of a version id.
    this.endpointPrefix = `db-${this.node.addr.slice(0, 8)}-p-`;
    this.successTopic = this.topic('Succeeded', 'dreambooth-api: a prediction request succeeded on its endpoint');
    this.errorTopic = this.topic('Failed', 'dreambooth-api: a prediction request failed on its endpoint');
    this.endpointRole = createEndpointRole(this, {
      storage: props.storage,
      repositoryPrefix: props.config.registry.type === 'ecr' ? props.build.repositoryPrefix : undefined,
      topics: [this.successTopic, this.errorTopic],
      endpointPrefix: this.endpointPrefix,
    });
    if (props.config.registry.type === 'ecr') this.templateVariants = createTemplateVariantProject(this, props.build.repositoryPrefix);
    this.values = {
      endpointPrefix: this.endpointPrefix,
      endpointRoleArn: this.endpointRole.roleArn,
      successTopicArn: this.successTopic.topicArn,
      errorTopicArn: this.errorTopic.topicArn,
      outputPath: `s3://${props.storage.bucket.bucketName}/${PREDICTIONS_PREFIX}`,
      ...(this.templateVariants ? { variantBuild: { project: this.templateVariants.project.projectName, repositoryPrefix: this.templateVariants.repositoryPrefix } } : {}),
    };
    const fn = (fid: string, name: HandlerName) => new HouseFunction(this, fid, { name, config: props.config });
    this.functions = { endpoint: fn('Endpoints', 'prediction-endpoint'), predict: fn('Predict', 'predict'), notified: fn('Notified', 'prediction-notified'), record: fn('Record', 'record-prediction') };
    for (const topic of [this.successTopic, this.errorTopic]) topic.addSubscription(new LambdaSubscription(this.functions.notified));
    this.logGroup = new LogGroup(this, 'Logs', {
      logGroupName: `/aws/vendedlogs/states/dreambooth-${this.node.addr}`,
      retention: RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      stateMachineType: StateMachineType.STANDARD,
      definitionBody: DefinitionBody.fromChainable(this.definition(props.notify)),
      tracingEnabled: true,
      logs: { destination: this.logGroup, level: LogLevel.ALL, includeExecutionData: false },
    });
    this.sweep = new Rule(this, 'Sweep', {
      description: `dreambooth-api: deletes prediction endpoints without a prediction for ${props.config.serving.delete_idle_days} days`,
      schedule: Schedule.rate(Duration.days(1)),
      targets: [new LambdaFunction(this.functions.endpoint, { event: RuleTargetInput.fromObject({ action: 'sweep' }), retryAttempts: 2 })],
    });
  }

  grantEndpoints(grantee: IGrantable): void {
    grantEndpoints(grantee, this.endpointRole, this.endpointPrefix);
    this.templateVariants?.grantStart(grantee);
  }

  grantInvoke(grantee: IGrantable): void {
    grantInvoke(grantee, this, this.endpointPrefix);
  }

  /** Encrypted with SNS's AWS managed key (the endpoint role publishes as an account principal), TLS only. */
  private topic(id: string, displayName: string): Topic {
    return new Topic(this, id, { displayName, masterKey: Alias.fromAliasName(this, `${id}Key`, 'alias/aws/sns'), enforceSSL: true });
  }

  /** The endpoint ready, the request sent and answered, the outputs stored, the webhook sent. */
  private definition(notify: HouseFunction): State {
    const failed = new Fail(this, 'Prediction failed', { error: 'PredictionFailed', cause: 'See the prediction record.' });
    const failureWebhook = guarded(this.invoke(notify, 'Send the failure webhook', { prediction_id: predictionId, event: 'completed' }), failed, [TRANSIENT_RETRY, webhookRetry(this.config)]);
    failureWebhook.next(failed);
    const recordFailure = guarded(
      this.invoke(this.functions.record, 'Record the failure', { action: 'failure', prediction_id: predictionId, error: JsonPath.objectAt('$.error') }),
      failureWebhook,
    );
    recordFailure.next(failureWebhook);

    const succeeded = new Succeed(this, 'Prediction succeeded');
    // The outputs are stored by now: a webhook given up does not fail the prediction.
    const webhook = guarded(this.invoke(notify, 'Send the completion webhook', { prediction_id: predictionId, event: 'completed' }), succeeded, [TRANSIENT_RETRY, webhookRetry(this.config)]);
    webhook.next(succeeded);
    const store = guarded(
      this.invoke(this.functions.record, 'Store the outputs', { action: 'outputs', prediction_id: predictionId, response: JsonPath.objectAt('$.response') }, '$.stored'),
      recordFailure,
    );
    // The model's own error is recorded by "Store the outputs"; its webhook is the failure's.
    store.next(new Choice(this, 'Did the model succeed?').when(Condition.stringEquals('$.stored.status', 'failed'), failureWebhook).otherwise(webhook));

    const send = guarded(this.sendTask(), recordFailure);
    send.next(store);
    const ensure = guarded(
      this.invoke(this.functions.endpoint, 'Make sure the endpoint is ready', { action: 'ensure', prediction_id: predictionId }, '$.endpoint'),
      recordFailure,
    );
    const wait = new Wait(this, 'Wait for the endpoint', { time: WaitTime.duration(Duration.seconds(this.config.serving.poll_seconds)) });
    wait.next(ensure);
    ensure.next(new Choice(this, 'Is the endpoint ready?').when(Condition.booleanEquals('$.endpoint.ready', true), send).otherwise(wait));
    return ensure;
  }

  /** InvokeEndpointAsync, then the wait for SageMaker's notification: its queue and the prediction's time limit. */
  private sendTask(): LambdaInvoke {
    const seconds = REQUEST_TTL_SECONDS + this.config.serving.invocation_timeout_seconds + 15 * 60;
    return new LambdaInvoke(this, "Send the request and wait for the endpoint's answer", {
      lambdaFunction: this.functions.predict,
      integrationPattern: IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: TaskInput.fromObject({ prediction_id: predictionId, task_token: JsonPath.taskToken, endpoint: JsonPath.stringAt('$.endpoint.endpoint') }),
      resultPath: '$.response',
      taskTimeout: Timeout.duration(Duration.seconds(seconds)),
      retryOnServiceExceptions: false,
    });
  }

  private invoke(fn: HouseFunction, name: string, payload: Record<string, unknown>, resultPath: string = JsonPath.DISCARD): LambdaInvoke {
    return new LambdaInvoke(this, name, {
      lambdaFunction: fn,
      payload: TaskInput.fromObject(payload),
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      resultPath,
      taskTimeout: Timeout.duration(Duration.seconds(this.config.timeouts.step_seconds)),
    });
  }
}
