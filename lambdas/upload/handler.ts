import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { ddb, s3 } from '#shared/aws';
import { once } from '#shared/deps';
import { ENV } from '#shared/env';
import { errorResponse, json } from '#shared/errors';
import { logger } from '#shared/log';
import { parseOwners } from '#shared/owners';
import { operationFor } from '#shared/routes';
import { Store } from '#shared/store';
import { createUpload } from './core.ts';
import { trainingLog } from './logs.ts';
import { weightsUrl } from './weights.ts';

const deps = once(() => ({ bucket: process.env[ENV.bucket] ?? '', s3: s3(), store: new Store(ddb(), process.env[ENV.table] ?? '') }));

export const handler = async (event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult> => {
  const op = operationFor('upload', event.httpMethod, event.resource);
  const p = event.pathParameters ?? {};
  try {
    if (op === 'getWeights') {
      const url = await weightsUrl(deps(), parseOwners(event.requestContext?.authorizer?.owners), p.id ?? '');
      // The presigned URL goes in the Location header only, and is never logged.
      logger('upload', { training_id: p.id }, context).info('weights URL issued');
      return json(302, { detail: 'redirecting to a short-lived download URL', status: 302 }, { location: url });
    }
    if (op === 'getLogs') {
      const log = await trainingLog(deps(), parseOwners(event.requestContext?.authorizer?.owners), p.id ?? '');
      logger('upload', { training_id: p.id }, context).info('log read');
      if ('url' in log) return json(302, { detail: 'redirecting to a short-lived download URL of the whole log', status: 302 }, { location: log.url });
      return { statusCode: 200, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }, body: log.text };
    }
    if (op !== 'createUpload') return json(404, { detail: `no route ${event.resource}`, status: 404 });
    // `/v1/upload/{filename}`, decoded by API Gateway (a malformed escape stays as sent: the name check refuses it).
    // The presigned URLs in the answer are never logged.
    const out = await createUpload(deps(), p.filename ?? '');
    logger('upload', {}, context).info('upload URLs issued');
    return json(200, out);
  } catch (e) {
    if (!(e instanceof Error && e.name === 'ApiError')) logger('upload', {}, context).error('unhandled', { error: (e as Error).message });
    return errorResponse(e);
  }
};
