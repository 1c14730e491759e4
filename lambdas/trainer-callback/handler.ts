/** The trainer-facing callback route (`/v1/callbacks/{id}`): trainer webhooks, Cog's and Replicate's. */
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { s3, secretsManager, sfn } from '#shared/aws';
import { baseDeps, demoTrainer, emitter, once } from '#shared/deps';
import { json } from '#shared/errors';
import { logger } from '#shared/log';
import { LOG_MESSAGES } from '#shared/log-messages';
import { trainerCallback } from './core.ts';

const deps = once(() => ({ ...baseDeps(), sfn: sfn(), secrets: secretsManager(), s3: s3(), emit: emitter(), demoTrainer: demoTrainer() }));

export const handler = async (event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult> => {
  const body = event.isBase64Encoded ? Buffer.from(event.body ?? '', 'base64').toString('utf8') : (event.body ?? '');
  const headers = Object.fromEntries(Object.entries(event.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const trainingId = event.pathParameters?.id ?? '';
  const log = logger('trainer-callback', { training_id: trainingId }, context);
  try {
    const out = await trainerCallback(deps(), trainingId, event.queryStringParameters?.secret, { headers, body });
    log.info(LOG_MESSAGES.trainerCallback, { status: out.status, detail: out.body.detail });
    return json(out.status, out.body);
  } catch (e) {
    log.error('trainer callback failed', { error: (e as Error).message });
    // 5xx makes Cog and Replicate retry the webhook.
    return json(500, { detail: 'callback could not be processed; retry' });
  }
};
