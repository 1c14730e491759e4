import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { lambda, secretsManager, sfn } from '#shared/aws';
import { baseDeps, demoTrainer, once } from '#shared/deps';
import { ENV, requireEnv } from '#shared/env';
import { errorResponse, json } from '#shared/errors';
import { logger } from '#shared/log';
import { parseOwners } from '#shared/owners';
import { InputSchemas } from '#shared/input-schema';
import { getWebhookSigningMaster } from '#shared/secrets';
import { route, type ApiDeps } from './routing.ts';
import { openApiDocument } from './openapi.ts';
import { liveRegistry } from './templates.ts';

const deps = once((): ApiDeps => {
  const d = { ...baseDeps(), sfn: sfn(), secrets: secretsManager() };
  return {
    ...d,
    lambda: lambda(),
    demoTrainer: demoTrainer(),
    stateMachineArn: requireEnv(ENV.stateMachineArn),
    notifyFunction: requireEnv(ENV.notifyFunction),
    webhookSigningMaster: () => getWebhookSigningMaster(d.secrets, requireEnv(ENV.webhookSecret)),
    log: logger('api'),
    templates: liveRegistry(d.config.egress.allow),
    inputSchemas: new InputSchemas(d.config, d.secrets),
    openApi: once(() => openApiDocument(d.publicUrl)),
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
