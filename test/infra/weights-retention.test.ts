/**
 * A weights version's weights (`weights/<sha256>` in the data bucket) live as long as the
 * version: no lifecycle rule of the synthesized data bucket may reach that prefix, and local
 * mode's retention sweep (which applies the template's rules) never deletes one. Real s3rver
 * for the sweep; time moves by passing `now`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig } from '#shared/config';
import { WEIGHTS_PREFIX, weightsKey } from '#shared/weights-version';
import { DreamboothStack } from '#infra/stack';
import type { CfnTemplate } from '#infra/local/cloudformation/synthesize';
import { createTable, startDynamoDb } from '#infra/local/dynamodb/index';
import { expireNow, expiryRulesOf } from '#infra/local/expiry';
import { createBucket, startS3 } from '#infra/local/s3';
import { readCdkJson } from '#test-helpers/paths';
import { testTable } from '#test-helpers/table';

const DAY = 86_400_000;

/** A lifecycle rule as CloudFormation has it (the rule-level Prefix, or a Filter). */
interface Rule {
  Id?: string;
  Status?: string;
  Prefix?: string;
  Filter?: { Prefix?: string; And?: { Prefix?: string } };
  AbortIncompleteMultipartUpload?: unknown;
  [action: string]: unknown;
}

/** Actions that delete or move finished objects; aborting an unfinished upload touches no object. */
const ACTIONS = ['ExpirationInDays', 'ExpirationDate', 'ExpiredObjectDeleteMarker', 'NoncurrentVersionExpiration', 'NoncurrentVersionExpirationInDays', 'Transitions', 'Transition', 'NoncurrentVersionTransitions', 'NoncurrentVersionTransition'];

/** Whether `rule` can act on an object under `weights/`: enabled, acting on finished objects, and its prefix (if any) a prefix of `weights/`. */
function reachesWeights(rule: Rule): boolean {
  if (rule.Status !== 'Enabled') return false;
  if (!ACTIONS.some((a) => rule[a] !== undefined)) return false;
  const prefix = rule.Prefix ?? rule.Filter?.Prefix ?? rule.Filter?.And?.Prefix;
  return prefix === undefined || WEIGHTS_PREFIX.startsWith(prefix);
}

let template: CfnTemplate;
let dataRules: Rule[];

beforeAll(() => {
  const cdk = readCdkJson() as { context: { dreambooth: Record<string, unknown> } };
  const config = parseConfig(mergeConfig(cdk.context.dreambooth, { retention: { prediction_days: 1, staged_archive_days: 2 } }));
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new DreamboothStack(app, 'Dreambooth', { config });
  template = Template.fromStack(stack).toJSON() as CfnTemplate;
  const id = stack.getLogicalId(stack.storage.bucket.node.defaultChild as never);
  dataRules = ((template.Resources[id]!.Properties?.LifecycleConfiguration as { Rules?: Rule[] } | undefined)?.Rules ?? []) as Rule[];
});

describe('the data bucket', () => {
  it('has expiring rules, none of which reaches weights/', () => {
    // The check below sees rules at all: the staged archives' is one.
    expect(dataRules.filter((r) => r.ExpirationInDays !== undefined).length).toBeGreaterThan(0);
    expect(dataRules.filter(reachesWeights)).toEqual([]);
  });

  it('the check itself catches a rule without a prefix and a rule on a shorter prefix', () => {
    expect(reachesWeights({ Status: 'Enabled', ExpirationInDays: 90 })).toBe(true);
    expect(reachesWeights({ Status: 'Enabled', Prefix: 'w', ExpirationInDays: 1 })).toBe(true);
    expect(reachesWeights({ Status: 'Enabled', Filter: { Prefix: 'weights/' }, ExpirationInDays: 1 })).toBe(true);
    expect(reachesWeights({ Status: 'Enabled', Prefix: 'weights/abc', ExpirationInDays: 1 })).toBe(false);
    expect(reachesWeights({ Status: 'Enabled', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } })).toBe(false);
  });
});

describe("local mode's retention sweep", () => {
  const dir = mkdtempSync(join(tmpdir(), 'weights-retention-'));
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  let servers: { close(): Promise<void> }[] = [];
  let s3: S3Client;
  let db: DynamoDBDocumentClient;

  beforeAll(async () => {
    const s3Server = await startS3(join(dir, 's3'));
    const dynamo = await startDynamoDb(join(dir, 'dynamodb'));
    servers = [s3Server, dynamo];
    s3 = new S3Client({ region: 'us-east-1', endpoint: s3Server.url, forcePathStyle: true, credentials });
    const raw = new DynamoDBClient({ region: 'us-east-1', endpoint: dynamo.url, credentials });
    db = DynamoDBDocumentClient.from(raw);
    await createBucket(s3, 'data');
    await createTable(raw, 'table', testTable());
  });
  afterAll(async () => {
    s3?.destroy();
    db?.destroy();
    for (const s of servers) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('deletes staged archives and predictions past their days but never a weights object', async () => {
    const weights = weightsKey('c'.repeat(64));
    for (const Key of [weights, 'staged/t1/lora.safetensors', 'predictions/p1/request.json']) {
      await s3.send(new PutObjectCommand({ Bucket: 'data', Key, Body: 'x' }));
    }
    const rules = expiryRulesOf(template);
    const targets = { s3, db, bucket: 'data', table: 'table' };
    // Ten years on: everything with a retention is gone (the sweep did run), the weights stay.
    expect((await expireNow(rules, targets, Date.now() + 3650 * DAY)).objects).toBe(2);
    const left = await s3.send(new ListObjectsV2Command({ Bucket: 'data' }));
    expect((left.Contents ?? []).map((o) => o.Key)).toEqual([weights]);
  });
});
