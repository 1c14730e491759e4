/**
 * One small item per endpoint in the table: when a prediction last used it (the daily sweep
 * deletes endpoints idle for serving.delete_idle_days) and whether its scaling is in place (a
 * step stopped half-way leaves it unset, and the next prediction sets it up again).
 */
import { DeleteCommand, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Store } from '../store.ts';

export interface EndpointRecord {
  endpoint: string;
  version: string;
  last_used_at: string;
  scaling_ready: boolean;
}

const key = (endpoint: string) => ({ pk: `ENDPOINT#${endpoint}`, sk: 'ENDPOINT' });

export class EndpointRecords {
  constructor(private readonly store: Store) {}

  async get(endpoint: string): Promise<EndpointRecord | null> {
    const out = await this.store.db.send(new GetCommand({ TableName: this.store.table, Key: key(endpoint), ConsistentRead: true }));
    if (!out.Item) return null;
    const { endpoint: name, version, last_used_at, scaling_ready } = out.Item as EndpointRecord;
    return { endpoint: name, version, last_used_at, scaling_ready: scaling_ready === true };
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
