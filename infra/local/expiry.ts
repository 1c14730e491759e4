/**
 * The data bucket's lifecycle expirations and the table's time to live, which S3 and DynamoDB
 * apply on AWS and neither s3rver nor dynalite does: read from the synthesized template and
 * applied by local mode at start and then every hour, so that local mode keeps no prediction,
 * upload or staged archive longer than the deployed stack would. AWS deletes some time after
 * the deadline (S3 at the next midnight UTC past it, DynamoDB within days); here it is at the
 * next sweep, which is stricter, never looser.
 */
import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DeleteCommand, ScanCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { LocalAws } from './aws.ts';
import { localClient, operatorStore } from './clients.ts';
import type { CfnTemplate } from './cloudformation/synthesize.ts';

export interface ExpiryRules {
  /** Objects under `prefix` are deleted `days` after they were written. */
  objects: { prefix: string; days: number }[];
  /** Items whose attribute holds an epoch second in the past are deleted. */
  ttlAttribute: string | null;
}

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

interface LifecycleRule {
  Prefix?: string;
  Status?: string;
  ExpirationInDays?: number;
}

/** The rules of the stack's data bucket (the one whose rules name prefixes) and table. */
export function expiryRulesOf(template: CfnTemplate): ExpiryRules {
  const resources = Object.values(template.Resources);
  const objects: ExpiryRules['objects'] = [];
  for (const r of resources.filter((r) => r.Type === 'AWS::S3::Bucket')) {
    const rules = ((r.Properties?.LifecycleConfiguration as { Rules?: LifecycleRule[] } | undefined)?.Rules ?? []).filter(
      (rule) => rule.Status === 'Enabled' && rule.Prefix && rule.ExpirationInDays,
    );
    for (const rule of rules) objects.push({ prefix: rule.Prefix!, days: rule.ExpirationInDays! });
  }
  const table = resources.find((r) => r.Type === 'AWS::DynamoDB::Table');
  const ttl = table?.Properties?.TimeToLiveSpecification as { AttributeName?: string; Enabled?: boolean } | undefined;
  return { objects, ttlAttribute: ttl?.Enabled && ttl.AttributeName ? ttl.AttributeName : null };
}

export interface ExpiryTargets {
  s3: S3Client;
  db: DynamoDBDocumentClient;
  bucket: string;
  table: string;
}

/** Deletes what has expired by `now`; how many objects and items it deleted. */
export async function expireNow(rules: ExpiryRules, t: ExpiryTargets, now = Date.now()): Promise<{ objects: number; items: number }> {
  let objects = 0;
  for (const { prefix, days } of rules.objects) objects += await expireObjects(t, prefix, now - days * DAY_MS);
  const items = rules.ttlAttribute ? await expireItems(t, rules.ttlAttribute, Math.floor(now / 1000)) : 0;
  return { objects, items };
}

async function expireObjects(t: ExpiryTargets, prefix: string, before: number): Promise<number> {
  let deleted = 0;
  let token: string | undefined;
  do {
    const page = await t.s3.send(new ListObjectsV2Command({ Bucket: t.bucket, Prefix: prefix, ContinuationToken: token }));
    const old = (page.Contents ?? []).filter((o) => o.Key && o.LastModified && o.LastModified.getTime() < before);
    if (old.length) {
      await t.s3.send(new DeleteObjectsCommand({ Bucket: t.bucket, Delete: { Objects: old.map((o) => ({ Key: o.Key! })), Quiet: true } }));
      deleted += old.length;
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return deleted;
}

async function expireItems(t: ExpiryTargets, attribute: string, nowSeconds: number): Promise<number> {
  let deleted = 0;
  let start: Record<string, unknown> | undefined;
  do {
    const page = await t.db.send(
      new ScanCommand({
        TableName: t.table,
        FilterExpression: '#ttl < :now',
        ExpressionAttributeNames: { '#ttl': attribute, '#pk': 'pk', '#sk': 'sk' },
        ExpressionAttributeValues: { ':now': nowSeconds },
        ProjectionExpression: '#pk, #sk',
        ExclusiveStartKey: start,
      }),
    );
    for (const key of page.Items ?? []) {
      await t.db.send(new DeleteCommand({ TableName: t.table, Key: { pk: key.pk, sk: key.sk } }));
      deleted++;
    }
    start = page.LastEvaluatedKey;
  } while (start);
  return deleted;
}

/** Sweeps now and every hour until stopped; a failed sweep is reported and the next one tries again. */
export function startExpiry(rules: ExpiryRules, targets: ExpiryTargets, note: (line: string) => void): { stop(): void } {
  const sweep = () =>
    expireNow(rules, targets).then(
      ({ objects, items }) => {
        if (objects || items) note(`expired ${objects} object(s) and ${items} record(s) past their retention`);
      },
      (e: Error) => note(`the retention sweep failed: ${e.message}`),
    );
  void sweep();
  const timer = setInterval(sweep, HOUR_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** Local mode's sweeper, as the operator; returns its stop. */
export function startLocalExpiry(aws: LocalAws, template: CfnTemplate, note: (line: string) => void): () => Promise<void> {
  const s3 = localClient(aws.env, S3Client, aws.env.AWS_ENDPOINT_URL_S3, { forcePathStyle: true });
  const sweeper = startExpiry(expiryRulesOf(template), { s3, db: operatorStore(aws).db, bucket: aws.bucket, table: aws.table }, note);
  return async () => {
    sweeper.stop();
    s3.destroy();
  };
}
