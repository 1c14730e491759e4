import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { s3 } from '#shared/aws';
import { once } from '#shared/deps';
import { ENV } from '#shared/env';
import { errorResponse, json } from '#shared/errors';
import { logger } from '#shared/log';
import { createUpload } from './core.ts';

const deps = once(() => ({ bucket: process.env[ENV.bucket] ?? '', s3: s3() }));

export const handler = async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => {
  // `/v1/upload/{filename}`, as the client encoded it; a malformed escape is a bad name.
  const raw = event.path.split('/').pop() ?? '';
  try {
    let filename = raw;
    try {
      filename = decodeURIComponent(raw);
    } catch {
      /* the name check refuses it */
    }
    // The presigned URLs in the answer are never logged.
    const out = await createUpload(deps(), filename);
    logger('upload').info('upload URLs issued');
    return json(200, out);
  } catch (e) {
    if (!(e instanceof Error && e.name === 'ApiError')) logger('upload').error('unhandled', { error: (e as Error).message });
    return errorResponse(e);
  }
};
