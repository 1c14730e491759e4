import type { Context } from 'aws-lambda';
/**
 * The demo trainer on AWS: one asynchronous invocation is one demo run (at most 15 minutes).
 * The same run logic as local mode's Cog-protocol server; the output goes to S3 and is handed
 * over as a short-lived presigned URL; progress lives in a `DEMO#<run>` item so the
 * pipeline can ask how the run is doing and cancel it.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import * as z from '#shared/zod';
import { ddb, s3 } from '#shared/aws';
import { runtimeConfig } from '#shared/runtime-config';
import { ENV, requireEnv } from '#shared/env';
import { logger } from '#shared/log';
import { demoKey } from '#shared/trainers/demo/lambda-trainer';
import { newPrediction, publicView, runDemo, type Prediction } from './trainer.ts';

const Event = z.object({ run_id: z.string().check(z.minLength(1)), input: z.record(z.string(), z.unknown()), webhook: z.url() });

export const handler = async (event: unknown, context?: Context) => {
  const { run_id, input, webhook } = Event.parse(event);
  const table = requireEnv(ENV.table);
  const bucket = requireEnv(ENV.bucket);
  const log = logger('demo-trainer', { run_id }, context);
  const p = newPrediction(run_id, input, webhook);
  try {
    // One run per id, whatever the retries of the asynchronous invocation.
    await ddb().send(new PutCommand({ TableName: table, Item: { ...demoKey(run_id), ...save(p), cancel: false }, ConditionExpression: 'attribute_not_exists(pk)' }));
  } catch (e) {
    if ((e as Error).name === 'ConditionalCheckFailedException') return { skipped: 'run already exists' };
    throw e;
  }
  const config = runtimeConfig();
  const trainer = Object.values(config.trainers).find((t) => t.backend === 'demo');
  await runDemo(p, {
    stepsPerSecond: trainer?.backend === 'demo' ? trainer.steps_per_second : 10,
    allow: config.egress.allow,
    log: (line) => log.info(line),
    upload: async (id, file) => {
      const Key = `trainer-outputs/${id}/${file.name}`;
      await s3().send(new PutObjectCommand({ Bucket: bucket, Key, Body: file.body, ContentType: file.contentType }));
      return getSignedUrl(s3(), new GetObjectCommand({ Bucket: bucket, Key }), { expiresIn: 3600 });
    },
    isCanceled: async () => {
      const out = await ddb().send(new GetCommand({ TableName: table, Key: demoKey(run_id), ConsistentRead: true }));
      return out.Item?.cancel === true;
    },
    onChange: async (q) => {
      await ddb().send(
        new UpdateCommand({
          TableName: table,
          Key: demoKey(run_id),
          UpdateExpression: 'SET prediction = :p, updated_at = :t',
          ExpressionAttributeValues: { ':p': save(q).prediction, ':t': Date.now() },
        }),
      );
    },
  });
  return { status: p.status };
};

function save(p: Prediction) {
  return { prediction: publicView(p), updated_at: Date.now() };
}
