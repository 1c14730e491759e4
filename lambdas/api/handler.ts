import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { lambda, lazyS3, secretsManager, sfn } from '#shared/aws';
import { baseDeps, demoTrainer, once } from '#shared/deps';
import { ENV, requireEnv } from '#shared/env';
import { errorResponse, json } from '#shared/errors';
import { logger } from '#shared/log';
import { parseOwners } from '#shared/owners';
import { InputSchemas } from '#shared/input-schema';
import { getWebhookSigningMaster } from '#shared/secrets';
import { route, type ApiDeps } from './routing.ts';
import { openApiDocument } from './openapi.ts';
import { VersionSchemas } from './prediction-inputs.ts';
import { liveRegistry } from './templates.ts';

const deps = once((): ApiDeps => {
  const d = { ...baseDeps(), sfn: sfn(), secrets: secretsManager() };
  const templates = liveRegistry(d.config.egress.allow);
  return {
    ...d,
    lambda: lambda(),
    demoTrainer: demoTrainer(),
    stateMachineArn: requireEnv(ENV.stateMachineArn),
    notifyFunction: requireEnv(ENV.notifyFunction),
    webhookSigningMaster: () => getWebhookSigningMaster(d.secrets, requireEnv(ENV.webhookSecret)),
    log: logger('api'),
    templates,
    inputSchemas: new InputSchemas(d.config, d.secrets),
    openApi: once(() => openApiDocument(d.publicUrl)),
    predictions: {
      // Empty where the stack has no serving: the predictions routes say so (503).
      stateMachineArn: process.env[ENV.predictionStateMachineArn] ?? '',
      s3: lazyS3,
      schemas: new VersionSchemas(templates),
    },
  };
});

export const handler = async (event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult> => {
  // The request's own logger: its id and cold start on every line.
  const d = { ...deps(), log: deps().log.with({}, context) };
  const owners = parseOwners(event.requestContext?.authorizer?.owners);
  const body = event.body == null ? null : event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  try {
    const out = await route(d, {
      method: event.httpMethod,
      // The resource, not event.path: a custom domain's base path is in event.path.
      resource: event.resource,
      params: pathParameters(event.pathParameters),
      query: event.queryStringParameters ?? {},
      body,
      owners,
      idempotencyKey: header(event.headers, 'idempotency-key'),
      prefer: header(event.headers, 'prefer'),
    });
    return json(out.status, out.body);
  } catch (e) {
    if (!(e instanceof Error && e.name === 'ApiError')) d.log.error('unhandled', { error: (e as Error).message, resource: event.resource });
    return errorResponse(e);
  }
};

function pathParameters(raw: APIGatewayProxyEvent['pathParameters']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw ?? {})) if (v !== undefined) out[k] = v;
  return out;
}

function header(headers: APIGatewayProxyEvent['headers'] | null, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() === name) return v ?? undefined;
  return undefined;
}
