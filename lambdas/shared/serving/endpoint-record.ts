/**
 * One small item per endpoint in the table: when a prediction last used it (the daily sweep
 * deletes endpoints idle for serving.delete_idle_days) and whether its scaling is in place (a
 * step stopped half-way leaves it unset, and the next prediction sets it up again). A template's
 * endpoint on AWS also keeps the build making its image (./template-variant-build.ts): claimed
 * by one prediction with a conditional write, so that concurrent predictions start one build.
 */
import { DeleteCommand, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Store } from '../store.ts';

export interface EndpointRecord {
  endpoint: string;
  version: string;
  last_used_at: string;
  scaling_ready: boolean;
  /** The CodeBuild build making the endpoint's image (a template's variant), once started. */
  variant_build?: string;
  /** When a prediction claimed the start of that build. */
  variant_claimed_at?: string;
  /** The image the build made. */
  variant_image?: string;
}

const key = (endpoint: string) => ({ pk: `ENDPOINT#${endpoint}`, sk: 'ENDPOINT' });

export class EndpointRecords {
  constructor(private readonly store: Store) {}

  async get(endpoint: string): Promise<EndpointRecord | null> {
    const out = await this.store.db.send(new GetCommand({ TableName: this.store.table, Key: key(endpoint), ConsistentRead: true }));
    if (!out.Item) return null;
    const item = out.Item as EndpointRecord;
    return { ...item, scaling_ready: item.scaling_ready === true };
  }

  /**
   * Claims the start of the variant build: true for one caller only, unless a claim older than
   * `staleBefore` never recorded its build (its step stopped in between).
   */
  async claimVariantBuild(endpoint: string, now: Date, staleBefore: Date): Promise<boolean> {
    try {
      await this.store.db.send(
        new UpdateCommand({
          TableName: this.store.table,
          Key: key(endpoint),
          UpdateExpression: 'SET #c = :now REMOVE #b',
          ConditionExpression: 'attribute_not_exists(#c) OR (attribute_not_exists(#b) AND #c < :stale)',
          ExpressionAttributeNames: { '#c': 'variant_claimed_at', '#b': 'variant_build' },
          ExpressionAttributeValues: { ':now': now.toISOString(), ':stale': staleBefore.toISOString() },
        }),
      );
      return true;
    } catch (e) {
      if ((e as Error).name === 'ConditionalCheckFailedException') return false;
      throw e;
    }
  }

  /** Sets (or, with null, removes) the variant fields; removing the claim lets the next prediction build again. */
  async setVariant(endpoint: string, fields: { variant_build?: string | null; variant_image?: string; variant_claimed_at?: null }): Promise<void> {
    const set = Object.entries(fields).filter(([, v]) => v !== null && v !== undefined);
    const remove = Object.entries(fields).filter(([, v]) => v === null);
    const parts = [set.length ? `SET ${set.map(([k]) => `#${k} = :${k}`).join(', ')}` : '', remove.length ? `REMOVE ${remove.map(([k]) => `#${k}`).join(', ')}` : ''];
    await this.store.db.send(
      new UpdateCommand({
        TableName: this.store.table,
        Key: key(endpoint),
        UpdateExpression: parts.filter(Boolean).join(' '),
        ExpressionAttributeNames: Object.fromEntries(Object.keys(fields).map((k) => [`#${k}`, k])),
        ...(set.length ? { ExpressionAttributeValues: Object.fromEntries(set.map(([k, v]) => [`:${k}`, v])) } : {}),
      }),
    );
  }

  /** Records a use now (creating the item); returns it. */
  async touch(endpoint: string, version: string, now: Date): Promise<EndpointRecord> {
    const out = await this.store.db.send(
      new UpdateCommand({
        TableName: this.store.table,
        Key: key(endpoint),
        UpdateExpression: 'SET #e = :e, #v = :v, #u = :u',
        ExpressionAttributeNames: { '#e': 'endpoint', '#v': 'version', '#u': 'last_used_at' },
        ExpressionAttributeValues: { ':e': endpoint, ':v': version, ':u': now.toISOString() },
        ReturnValues: 'ALL_NEW',
      }),
    );
    const item = out.Attributes as EndpointRecord;
    return { ...item, scaling_ready: item.scaling_ready === true };
  }

  async setScalingReady(endpoint: string, ready: boolean): Promise<void> {
    await this.store.db.send(
      new UpdateCommand({
        TableName: this.store.table,
        Key: key(endpoint),
        UpdateExpression: 'SET #s = :s',
        ExpressionAttributeNames: { '#s': 'scaling_ready' },
        ExpressionAttributeValues: { ':s': ready },
      }),
    );
  }

  async delete(endpoint: string): Promise<void> {
    await this.store.db.send(new DeleteCommand({ TableName: this.store.table, Key: key(endpoint) }));
  }
}
