/**
 * Predictions in the trainings table (lambdas/shared/store.ts): one item each, listed newest
 * first through the `list` index (all owners) and the `prediction-owner` index (one owner's).
 * The owner is kept as `prediction_owner`, not `owner`: the `owner` index lists trainings only.
 * DynamoDB's TTL (the table's `expiration` attribute) deletes the item after retention.prediction_days.
 */
import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Page, Store } from '../store.ts';
import type { PredictionRecord, PredictionStatus } from './record.ts';

/** The index of one owner's predictions (infra/constructs/storage.ts creates it). */
export const PREDICTION_OWNER_INDEX = 'prediction-owner';
const key = (id: string) => ({ pk: `PREDICTION#${id}`, sk: 'PREDICTION' });
const KEYS = new Set(['pk', 'sk', 'listpk', 'listsk', 'prediction_owner']);

function toRecord(item: Record<string, unknown> | undefined): PredictionRecord | null {
  if (!item) return null;
  const out: Record<string, unknown> = { owner: item.prediction_owner };
  for (const [k, v] of Object.entries(item)) if (!KEYS.has(k)) out[k] = v;
  return out as unknown as PredictionRecord;
}

export class PredictionStore {
  constructor(private readonly store: Store) {}

  /** Creates the prediction; false when the id exists already. */
  async create(p: PredictionRecord): Promise<boolean> {
    const { owner, ...rest } = p;
    try {
      await this.store.db.send(
        new PutCommand({
          TableName: this.store.table,
          Item: { ...key(p.id), listpk: 'PREDICTIONS', listsk: `${p.created_at}#${p.id}`, prediction_owner: owner, ...rest },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return true;
    } catch (e) {
      if ((e as Error).name === 'ConditionalCheckFailedException') return false;
      throw e;
    }
  }

  async get(id: string): Promise<PredictionRecord | null> {
    const out = await this.store.db.send(new GetCommand({ TableName: this.store.table, Key: key(id), ConsistentRead: true }));
    return toRecord(out.Item);
  }

  /** The predictions `owners` may see, newest first: all for `*`, else each owner's own. */
  async list(owners: readonly string[], limit: number, cursor?: string): Promise<Page<PredictionRecord>> {
    const sources = owners.includes('*')
      ? [{ index: 'list', key: 'listpk', value: 'PREDICTIONS' }]
      : [...new Set(owners)].map((o) => ({ index: PREDICTION_OWNER_INDEX, key: 'prediction_owner', value: o }));
    const page = await this.store.pageOf(sources, limit, cursor);
    return { ...page, results: page.results.map((i) => toRecord(i)!) };
  }

  /**
   * Sets top-level fields. With `onlyIf`, the write happens only while the prediction is in one
   * of those statuses; returns null when it did not (or the prediction does not exist).
   */
  async update(id: string, fields: Partial<Omit<PredictionRecord, 'id' | 'owner'>>, onlyIf?: PredictionStatus[]): Promise<PredictionRecord | null> {
    const names: Record<string, string> = { '#pk': 'pk' };
    const values: Record<string, unknown> = {};
    const sets = Object.entries(fields).map(([field, value], i) => {
      names[`#f${i}`] = field;
      values[`:v${i}`] = value;
      return `#f${i} = :v${i}`;
    });
    const conds = ['attribute_exists(#pk)'];
    if (onlyIf) {
      names['#status'] = 'status';
      for (const [i, s] of onlyIf.entries()) values[`:s${i}`] = s;
      conds.push(`#status IN (${onlyIf.map((_, i) => `:s${i}`).join(', ')})`);
    }
    try {
      const out = await this.store.db.send(
        new UpdateCommand({
          TableName: this.store.table,
          Key: key(id),
          UpdateExpression: `SET ${sets.join(', ')}`,
          ConditionExpression: conds.join(' AND '),
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return toRecord(out.Attributes);
    } catch (e) {
      if ((e as Error).name === 'ConditionalCheckFailedException') return null;
      throw e;
    }
  }
}
