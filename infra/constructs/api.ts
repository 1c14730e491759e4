/**
 * The public API: a REST API whose routes (under `/v1`) go to the api Lambda behind a token
 * authorizer, plus the unauthenticated trainer callback route.
 */
import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import {
  AccessLogField,
  AccessLogFormat,
  AuthorizationType,
  IdentitySource,
  LambdaIntegration,
  LogGroupLogDestination,
  type Method,
  MethodLoggingLevel,
  type Resource,
  RestApi,
  TokenAuthorizer,
} from 'aws-cdk-lib/aws-apigateway';
import { Grant } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { ENV } from '#shared/env';
import { HouseFunction } from './function.ts';
import { importSecret, type Secrets } from './secrets.ts';
import { PREFIX, type Storage } from './storage.ts';
import type { TrainingWorkflow } from './workflow.ts';

export interface PublicApiProps {
  readonly config: Config;
  readonly storage: Storage;
  readonly secrets: Secrets;
  readonly workflow: TrainingWorkflow;
  readonly notify: HouseFunction;
}

export const STAGE_NAME = 'prod';

/** Token routes: [method, path under /v1]. */
const TOKEN_ROUTES: ReadonlyArray<readonly [string, string]> = [
  ['POST', 'trainings'],
  ['GET', 'trainings'],
  ['GET', 'trainings/{id}'],
  ['POST', 'trainings/{id}/cancel'],
  ['GET', 'models/{owner}/{name}/versions/{version}'],
  // Replicate's Trainings API creates trainings under the trainer's version.
  ['POST', 'models/{owner}/{name}/versions/{version}/trainings'],
  ['GET', 'webhooks/default/secret'],
  ['GET', 'trainers'],
];

/**
 * The Cog upload relay's routes (bin/cog-upload-relay.ts), on their own Lambda (trainer-uploads): they
 * check the trainer's own upload token, since a trainer holds no API token.
 */
const TRAINER_UPLOAD_ROUTES = [
  'trainer-uploads/{trainer}',
  'trainer-uploads/{trainer}/{upload_id}/parts/{n}',
  'trainer-uploads/{trainer}/{upload_id}/complete',
  'trainer-uploads/{trainer}/{upload_id}/abort',
] as const;

/** No path and no query string: the trainer callback secret travels in the query string. */
const ACCESS_LOG_FORMAT = AccessLogFormat.custom(
  JSON.stringify({
    requestId: AccessLogField.contextRequestId(),
    ip: AccessLogField.contextIdentitySourceIp(),
    requestTime: AccessLogField.contextRequestTime(),
    method: AccessLogField.contextHttpMethod(),
    resourcePath: AccessLogField.contextResourcePath(),
    status: AccessLogField.contextStatus(),
    responseLength: AccessLogField.contextResponseLength(),
    integrationLatency: AccessLogField.contextIntegrationLatency(),
  }),
);

export class PublicApi extends Construct {
  readonly restApi: RestApi;
  /** Base URL of the API, without a trailing slash. */
  readonly publicUrl: string;
  readonly functions: Record<'api' | 'authorizer' | 'callback' | 'uploads' | 'upload', HouseFunction>;
  readonly callbackMethod: Method;
  /** The upload relay's routes: not token-authorised either (the Lambda checks the upload token). */
  readonly trainerUploadMethods: Method[];

  constructor(scope: Construct, id: string, props: PublicApiProps) {
    super(scope, id);
    const accessLogs = new LogGroup(this, 'AccessLogs', {
      retention: RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.restApi = new RestApi(this, 'RestApi', {
      description: 'dreambooth-api: DreamBooth trainings, model versions and webhooks.',
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN,
      deployOptions: {
        stageName: STAGE_NAME,
        accessLogDestination: new LogGroupLogDestination(accessLogs),
        accessLogFormat: ACCESS_LOG_FORMAT,
        loggingLevel: MethodLoggingLevel.INFO,
        dataTraceEnabled: false,
        tracingEnabled: true,
        metricsEnabled: true,
        throttlingRateLimit: 50,
        throttlingBurstLimit: 100,
      },
    });
    // Built from the API id, not `restApi.url`: that one ends in "/" and references the stage,
    // which depends on every method (and so on the Lambdas that need this URL).
    const stack = Stack.of(this);
    this.publicUrl = `https://${this.restApi.restApiId}.execute-api.${stack.region}.${stack.urlSuffix}/${STAGE_NAME}`;
    this.functions = this.createFunctions(props);
    ({ callback: this.callbackMethod, uploads: this.trainerUploadMethods } = this.addRoutes());
  }

  private addRoutes(): { callback: Method; uploads: Method[] } {
    const { api, authorizer, callback, uploads: uploadsFn, upload } = this.functions;
    const v1 = this.restApi.root.addResource('v1');
    const validator = this.restApi.addRequestValidator('Basic', {
      validateRequestParameters: true,
      validateRequestBody: true,
    });
    const tokenAuthorizer = new TokenAuthorizer(this, 'TokenAuthorizer', {
      handler: authorizer,
      identitySource: IdentitySource.header('Authorization'),
      resultsCacheTtl: Duration.minutes(5),
    });
    const apiIntegration = new LambdaIntegration(api, { allowTestInvoke: false });
    const tokenRoute = (method: string, path: string, integration: LambdaIntegration) =>
      resourceAt(v1, path).addMethod(method, integration, {
        authorizer: tokenAuthorizer,
        authorizationType: AuthorizationType.CUSTOM,
        requestValidator: validator,
      });
    for (const [method, path] of TOKEN_ROUTES) tokenRoute(method, path, apiIntegration);
    // The seed's upload helper (presigned upload and serving URLs) on its own function.
    tokenRoute('POST', 'upload/{filename}', new LambdaIntegration(upload, { allowTestInvoke: false }));
    // Trainers cannot send our tokens: the Lambda checks the per-training callback secret.
    const trainerRoute = (path: string, integration: LambdaIntegration) =>
      resourceAt(v1, path).addMethod('POST', integration, { authorizationType: AuthorizationType.NONE, requestValidator: validator });
    const uploadIntegration = new LambdaIntegration(uploadsFn, { allowTestInvoke: false });
    const uploads = TRAINER_UPLOAD_ROUTES.map((path) => trainerRoute(path, uploadIntegration));
    for (const method of uploads) {
      Validations.of(method).acknowledge({
        id: 'AwsSolutions-APIG4',
        reason: "Cog upload relays cannot send API tokens: the Lambda checks the trainer's upload token in constant time.",
      });
    }
    return { callback: trainerRoute('callbacks/{id}', new LambdaIntegration(callback, { allowTestInvoke: false })), uploads };
  }

  private createFunctions(props: PublicApiProps) {
    const { config, storage, secrets, workflow, notify } = props;
    const common = { config, tableName: storage.table.tableName, bucketName: storage.bucket.bucketName };

    const api = new HouseFunction(this, 'Api', {
      ...common,
      name: 'api',
      // API Gateway gives up after 29 s.
      timeout: Duration.seconds(29),
      environment: {
        [ENV.stateMachineArn]: workflow.stateMachine.stateMachineArn,
        [ENV.publicUrl]: this.publicUrl,
        [ENV.apiTokensSecret]: secrets.apiTokens.secretArn,
        [ENV.webhookSecret]: secrets.webhookSigning.secretArn,
        [ENV.callbackKeySecret]: secrets.callbackKey.secretArn,
        [ENV.notifyFunction]: notify.functionName,
      },
    });
    storage.grantTableReadWrite(api);
    workflow.stateMachine.grantStartExecution(api);
    workflow.stateMachine.grantExecution(api, 'states:DescribeExecution', 'states:StopExecution');
    notify.grantInvoke(api);
    // Canceling needs no CodeBuild rights: stopping the execution stops a running startBuild.sync build.
    for (const secret of [secrets.apiTokens, secrets.webhookSigning, secrets.callbackKey]) secret.grantRead(api);

    // The presigned URLs act with this function's role: PUT the upload, GET it to serve it.
    const upload = new HouseFunction(this, 'Upload', { ...common, name: 'upload', timeout: Duration.seconds(10) });
    storage.grantObjects(upload, PREFIX.uploads, ['s3:GetObject', 's3:PutObject']);

    const authorizer = new HouseFunction(this, 'Authorizer', {
      ...common,
      name: 'authorizer',
      timeout: Duration.seconds(10),
      environment: { [ENV.apiTokensSecret]: secrets.apiTokens.secretArn },
    });
    secrets.apiTokens.grantRead(authorizer);

    const callback = new HouseFunction(this, 'TrainerCallback', {
      ...common,
      name: 'trainer-callback',
      timeout: Duration.seconds(29),
      environment: { [ENV.callbackKeySecret]: secrets.callbackKey.secretArn },
    });
    storage.grantTableReadWrite(callback);
    secrets.callbackKey.grantRead(callback);
    for (const secret of secrets.cogWebhookSecrets) secret.grantRead(callback);

    // The Cog upload relay's routes: apart from the callback, the only trainer-facing writer to S3.
    const uploads = new HouseFunction(this, 'TrainerUploads', {
      ...common,
      name: 'trainer-uploads',
      timeout: Duration.seconds(29),
    });
    this.grantTrainerUploads(props, uploads);
    // Task tokens are not resources: SendTask* takes no resource-level permission.
    Grant.addToPrincipal({
      grantee: callback,
      actions: ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'],
      resourceArns: ['*'],
    });
    return { api, authorizer, callback, uploads, upload };
  }

  /**
   * The upload routes create, presign and complete multipart uploads under `trainer-outputs/`
   * (presigned parts act with the Lambda's role); stage-weights copies the results from there.
   */
  private grantTrainerUploads(props: PublicApiProps, uploads: HouseFunction): void {
    const { config, storage, workflow } = props;
    storage.grantObjects(uploads, PREFIX.trainerOutputs, ['s3:PutObject', 's3:AbortMultipartUpload']);
    storage.grantObjects(workflow.functions.stageWeights, PREFIX.trainerOutputs, ['s3:GetObject']);
    for (const [name, trainer] of Object.entries(config.trainers)) {
      if (trainer.backend === 'cog' && trainer.upload_token_secret) {
        importSecret(this, `UploadToken-${name}`, trainer.upload_token_secret).grantRead(uploads);
      }
    }
  }
}

/** The resource at a path like `trainings/{id}/cancel`, created as needed. */
function resourceAt(root: Resource, path: string): Resource {
  return path.split('/').reduce((parent, part) => parent.getResource(part) as Resource ?? parent.addResource(part), root);
}
