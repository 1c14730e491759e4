/**
 * The trainer-facing Lambda: trainer webhooks (`/v1/callbacks/{id}`) and the Cog upload relay's
 * routes (`/v1/trainer-uploads/{trainer}…`), told apart by the API Gateway resource.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { s3, secretsManager, sfn } from '#shared/aws';
import { baseDeps, emitter, once } from '#shared/deps';
import { json } from '#shared/errors';
import { logger } from '#shared/log';
import { trainerCallback } from './core.ts';
import { trainerUpload, type UploadRoute } from './uploads.ts';

const deps = once(() => ({ ...baseDeps(), sfn: sfn(), secrets: secretsManager(), s3: s3(), emit: emitter() }));

const UPLOAD_ROUTES: Record<string, UploadRoute['action']> = {
  '/v1/trainer-uploads/{trainer}': 'create',
  '/v1/trainer-uploads/{trainer}/{upload_id}/parts/{n}': 'part',
  '/v1/trainer-uploads/{trainer}/{upload_id}/complete': 'complete',
  '/v1/trainer-uploads/{trainer}/{upload_id}/abort': 'abort',
};

export const handler = async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => {
  const body = event.isBase64Encoded ? Buffer.from(event.body ?? '', 'base64').toString('utf8') : (event.body ?? '');
  const headers = Object.fromEntries(Object.entries(event.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const action = UPLOAD_ROUTES[event.resource];
  if (action) return upload(event, action, headers.authorization, body);
  return callback(event, headers, body);
};

async function callback(event: APIGatewayProxyEvent, headers: Record<string, string | undefined>, body: string) {
  const trainingId = event.pathParameters?.id ?? '';
  const log = logger('trainer-callback', { training_id: trainingId });
  try {
    const out = await trainerCallback(deps(), trainingId, event.queryStringParameters?.secret, { headers, body });
    log.info('trainer callback', { status: out.status, detail: out.body.detail });
    return json(out.status, out.body);
  } catch (e) {
    log.error('trainer callback failed', { error: (e as Error).message });
    // 5xx makes Cog and Replicate retry the webhook.
    return json(500, { detail: 'callback could not be processed; retry' });
  }
}

async function upload(event: APIGatewayProxyEvent, action: UploadRoute['action'], authorization: string | undefined, body: string) {
  const p = event.pathParameters ?? {};
  const route = { action, trainer: p.trainer ?? '', uploadId: p.upload_id ?? '', part: p.n ?? '' } as UploadRoute;
  // Neither the token nor the presigned part URL in the answer is logged.
  const log = logger('trainer-upload', { trainer: route.trainer, action });
  try {
    const out = await trainerUpload(deps(), route, authorization, body);
    log.info('trainer upload', { status: out.status, ...(out.status >= 400 ? { detail: out.body.detail } : {}) });
    return json(out.status, out.body);
  } catch (e) {
    log.error('trainer upload failed', { error: (e as Error).message });
    return json(500, { detail: 'the upload step failed; retry' });
  }
}
