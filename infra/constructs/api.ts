/**
 * The public API: a REST API with every route of the route table (lambdas/shared/routes.ts),
 * each on its function, behind the token authorizer or (trainer-facing, the OpenAPI document)
 * not.
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import {
  AccessLogField,
  AccessLogFormat,
  AuthorizationType,
  IdentitySource,
  LambdaIntegration,
  LogGroupLogDestination,
  type IResource,
  type Method,
  MethodLoggingLevel,
  ResponseType,
  RestApi,
  TokenAuthorizer,
} from 'aws-cdk-lib/aws-apigateway';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { Config } from '#shared/config';
import { ROUTES, type Route, type RouteFunction } from '#shared/routes';
import { HouseFunction, type HandlerName } from './function.ts';

export interface PublicApiProps {
  readonly config: Config;
}

export const STAGE_NAME = 'prod';

/**
 * What API Gateway answers by itself, in the API's error shape `{detail, status}`. No route is a
 * 404 rather than API Gateway's 403 "Missing Authentication Token". Plain JSON without `$` or
 * `#`: a response template is VTL.
 */
export const GATEWAY_RESPONSES: Record<string, { status: number; detail: string }> = {
  MISSING_AUTHENTICATION_TOKEN: { status: 404, detail: 'no such route: check the method and the path (GET /v1/openapi.json lists every route)' },
  UNAUTHORIZED: { status: 401, detail: 'Unauthorized: send Authorization: Bearer <token> (or Token <token>)' },
  ACCESS_DENIED: { status: 403, detail: 'this token may not call this route' },
};

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
  /** Each route's method, by `"<METHOD> <path>"` of the route table. */
  readonly methods: Record<string, Method>;
  /** Whether this stack sets the account's API Gateway logging role (`api.set_account_logging_role`). */
  readonly setsAccountLoggingRole: boolean;

  constructor(scope: Construct, id: string, props: PublicApiProps) {
    super(scope, id);
    const accessLogs = new LogGroup(this, 'AccessLogs', {
      retention: RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // AWS::ApiGateway::Account is one setting per account and region: setting it replaces the
    // role any other stack set. Retained, so the role outlives this stack for whoever relies on it.
    this.setsAccountLoggingRole = props.config.api.set_account_logging_role;
    this.restApi = new RestApi(this, 'RestApi', {
      description: 'dreambooth-api: DreamBooth trainings, model versions and webhooks.',
      cloudWatchRole: this.setsAccountLoggingRole,
      ...(this.setsAccountLoggingRole ? { cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN } : {}),
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
    this.functions = this.createFunctions(props.config);
    this.methods = this.addRoutes();
  }

  /** Every route of the route table, on the function it names, with its authorization. */
  private addRoutes(): Record<string, Method> {
    const validator = this.restApi.addRequestValidator('Basic', {
      validateRequestParameters: true,
      validateRequestBody: true,
    });
    const tokenAuthorizer = new TokenAuthorizer(this, 'TokenAuthorizer', {
      handler: this.functions.authorizer,
      identitySource: IdentitySource.header('Authorization'),
      resultsCacheTtl: Duration.seconds(AUTHORIZER_CACHE_SECONDS),
    });
    const integrations = new Map<RouteFunction, LambdaIntegration>();
    const integration = (fn: RouteFunction) => {
      if (!integrations.has(fn)) integrations.set(fn, new LambdaIntegration(this.functionFor(fn), { allowTestInvoke: false }));
      return integrations.get(fn)!;
    };
    const methods: Record<string, Method> = {};
    for (const route of ROUTES as readonly Route[]) {
      const auth = route.auth === 'token'
        ? { authorizer: tokenAuthorizer, authorizationType: AuthorizationType.CUSTOM }
        : { authorizationType: AuthorizationType.NONE };
      const method = resourceAt(this.restApi.root, route.path).addMethod(route.method, integration(route.fn), { ...auth, requestValidator: validator });
      methods[`${route.method} ${route.path}`] = method;
    }
    for (const [type, r] of Object.entries(GATEWAY_RESPONSES)) {
      this.restApi.addGatewayResponse(type, {
        type: ResponseType.of(type),
        statusCode: String(r.status),
        templates: { 'application/json': JSON.stringify({ detail: r.detail, status: r.status }) },
      });
    }
    return methods;
  }

  private functionFor(fn: RouteFunction): HouseFunction {
    const byRoute: Record<RouteFunction, HouseFunction> = {
      api: this.functions.api,
      upload: this.functions.upload,
      'trainer-callback': this.functions.callback,
      'trainer-uploads': this.functions.uploads,
    };
    return byRoute[fn];
  }

  /** The functions behind the routes (their needs: infra/functions.ts). */
  private createFunctions(config: Config) {
    const fn = (id: string, name: HandlerName) => new HouseFunction(this, id, { name, config });
    return {
      api: fn('Api', 'api'),
      authorizer: fn('Authorizer', 'authorizer'),
      callback: fn('TrainerCallback', 'trainer-callback'),
      uploads: fn('TrainerUploads', 'trainer-uploads'),
      upload: fn('Upload', 'upload'),
    };
  }
}

/**
 * How long API Gateway keeps a token's allow: a revoked token keeps working this long. One
 * minute instead of the default five bounds that, and still spares most requests an
 * authorizer invocation (docs/deploying.md: revoking a token).
 */
export const AUTHORIZER_CACHE_SECONDS = 60;

/** The resource at a path like `/v1/trainings/{id}/cancel`, created as needed. */
function resourceAt(root: IResource, path: string): IResource {
  return path.split('/').slice(1).reduce((parent, part) => parent.getResource(part) ?? parent.addResource(part), root);
}
