import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { lambda, secretsManager, sfn } from '#shared/aws';
import { baseDeps, once } from '#shared/deps';
import { ENV, requireEnv } from '#shared/env';
import { errorResponse, json } from '#shared/errors';
import { logger } from '#shared/log';
import { getWebhookSecret } from '#shared/secrets';
import { route, type ApiDeps } from './core.ts';
import { liveRegistry } from './templates.ts';

const deps = once((): ApiDeps => {
  const d = { ...baseDeps(), sfn: sfn(), secrets: secretsManager() };
  return {
    ...d,
    lambda: lambda(),
    stateMachineArn: requireEnv(ENV.stateMachineArn),
    notifyFunction: requireEnv(ENV.notifyFunction),
    webhookSecret: () => getWebhookSecret(d.secrets, requireEnv(ENV.webhookSecret)),
    log: logger('api'),
    templates: liveRegistry(d.config.egress.allow),
  };
});

export const handler = async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => {
  const d = deps();
  const owners = parseOwners(event.requestContext?.authorizer?.owners);
  const body = event.body == null ? null : event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  try {
    const out = await route(d, {
      method: event.httpMethod,
      path: event.path,
      query: event.queryStringParameters ?? {},
      body,
      owners,
      idempotencyKey: header(event.headers, 'idempotency-key'),
    });
    return json(out.status, out.body);
  } catch (e) {
    if (!(e instanceof Error && e.name === 'ApiError')) d.log.error('unhandled', { error: (e as Error).message, path: event.path });
    return errorResponse(e);
  }
};

function header(headers: APIGatewayProxyEvent['headers'] | null, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() === name) return v ?? undefined;
  return undefined;
}

function parseOwners(raw: unknown): string[] {
  if (typeof raw !== 'string') return [];
  try {
    const v = JSON.parse(raw);
    return Array.isArray(v) ? v.map(String) : [];
  } catch {
    return [];
  }
}
