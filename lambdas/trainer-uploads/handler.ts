/**
 * The Cog upload relay's routes (`/v1/trainer-uploads/{trainer}…`), told apart by the API
 * Gateway resource. Its own function: the only trainer-facing one that writes to S3, and the
 * callback's cold start carries no S3 client.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { s3, secretsManager } from '#shared/aws';
import { once } from '#shared/deps';
import { ENV } from '#shared/env';
import { runtimeConfig } from '#shared/runtime-config';
import { json } from '#shared/errors';
import { logger } from '#shared/log';
import { operationFor } from '#shared/routes';
import { trainerUpload, type UploadRoute } from './core.ts';

const deps = once(() => ({ config: runtimeConfig(), bucket: process.env[ENV.bucket] ?? '', s3: s3(), secrets: secretsManager() }));

export const handler = async (event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult> => {
  const body = event.isBase64Encoded ? Buffer.from(event.body ?? '', 'base64').toString('utf8') : (event.body ?? '');
  const authorization = Object.entries(event.headers ?? {}).find(([k]) => k.toLowerCase() === 'authorization')?.[1] ?? undefined;
  const p = event.pathParameters ?? {};
  const action = operationFor('trainer-uploads', event.httpMethod, event.resource);
  if (!action) return json(404, { detail: `no upload route ${event.resource}` });
  const route = { action, trainer: p.trainer ?? '', uploadId: p.upload_id ?? '', part: p.n ?? '' } as UploadRoute;
  // Neither the token nor the presigned part URL in the answer is logged.
  const log = logger('trainer-upload', { trainer: route.trainer, action }, context);
  try {
    const out = await trainerUpload(deps(), route, authorization, body);
    log.info('trainer upload', { status: out.status, ...(out.status >= 400 ? { detail: out.body.detail } : {}) });
    return json(out.status, out.body);
  } catch (e) {
    log.error('trainer upload failed', { error: (e as Error).message });
    return json(500, { detail: 'the upload step failed; retry' });
  }
};
