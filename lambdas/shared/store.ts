/**
 * Trainings and model versions in one DynamoDB table (pk/sk; GSIs `list` and `owner` for
 * newest-first listing). No transactions: each write is one conditional item write, so it also runs on
 * dynalite in local mode.
 */
import { GetCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import type { Status, TrainingRecord } from './training.ts';

export interface VersionRecord {
  id: string;
  model: string;
  image: string;
  notes: string | null;
  training_id: string;
  template: { name: string; repository: string; digest: string; weights_input?: string };
  created_at: string;
  /**
   * A weights version (no image of its own): the template loads these weights through its input
   * `input` at run time. `key` is content-addressed in the data bucket (`weights/<sha256>`) and
   * kept as long as the version. Absent on image versions (the weights baked into `image`).
   */
  weights?: VersionWeights;
  /**
   * The version's SageMaker variant (`repository@sha256:…`): its image plus one layer with the
   * serving adapter (serving/sagemaker_adapter.py) and its entrypoint. Absent on versions built
   * before serving existed: their first prediction fails and says to re-template.
   */
  serving_image?: string;
}

export interface VersionWeights {
  key: string;
  size: number;
  /** Hex sha256 of the weights file. */
  sha256: string;
  /** The template's input that takes the weights' URL (set by the service, hidden from users). */
  input: string;
}

export interface Page<T> {
  results: T[];
  next: string | null;
  previous: string | null;
}

const trainingKey = (id: string) => ({ pk: `TRAINING#${id}`, sk: 'TRAINING' });
const versionKey = (model: string, id: string) => ({ pk: `MODEL#${model}`, sk: `VERSION#${id}` });
/** A version id's model, so a bare version id finds its version (Replicate's `version` of a prediction). */
const versionAliasKey = (id: string) => ({ pk: `VERSIONID#${id}`, sk: 'VERSIONID' });
const KEYS = new Set(['pk', 'sk', 'listpk', 'listsk']);

function strip<T>(item: Record<string, unknown> | undefined): T | null {
  if (!item) return null;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(item)) if (!KEYS.has(k)) out[k] = v;
  return out as T;
}

export class BadCursorError extends Error {
  override name = 'BadCursorError';
}

/** A page boundary: the sort key of the last (next) or first (previous) item shown. */
interface Cursor {
  dir: 'next' | 'prev';
  at: string;
}
const encodeCursor = (c: Cursor) => Buffer.from(JSON.stringify(c)).toString('base64url');
function decodeCursor(cursor: string | undefined): Cursor | undefined {
  if (!cursor) return undefined;
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (v && (v.dir === 'next' || v.dir === 'prev') && typeof v.at === 'string') return v;
  } catch {
    /* fall through */
  }
  throw new BadCursorError('cursor is not valid: pass the `cursor` of a `next` or `previous` URL unchanged');
}

/**
 * Idempotency-Key records (lambdas/api/idempotency.ts) share the table: one partition, their
 * own sort keys, and the TTL attribute the storage construct enables.
 */
export const IDEMPOTENCY = { partition: 'IDEMPOTENCY', expiryAttribute: 'expiration', ttlSeconds: 24 * 3600 } as const;

export class Store {
  constructor(
    /** Public for the trainer queue (lambdas/shared/trainer-queue/), which keeps its items in this table. */
    readonly db: DynamoDBDocumentClient,
    readonly table: string,
  ) {}

  /**
   * The client, for code that sends the plain DynamoDB commands with its own marshalling
   * (Powertools idempotency): the document client marshals only its own commands.
   */
  get client(): DynamoDBDocumentClient {
    return this.db;
  }

  /** Creates the training; false when the id exists already. */
  async createTraining(t: TrainingRecord): Promise<boolean> {
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...trainingKey(t.id), listpk: 'TRAININGS', listsk: `${t.created_at}#${t.id}`, ...t },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return true;
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException || (e as Error).name === 'ConditionalCheckFailedException') return false;
      throw e;
    }
  }

  async getTraining(id: string): Promise<TrainingRecord | null> {
    const out = await this.db.send(new GetCommand({ TableName: this.table, Key: trainingKey(id), ConsistentRead: true }));
    return strip<TrainingRecord>(out.Item);
  }

  /**
   * The trainings `owners` may see, newest first: all of them for `*`, else each owner's own
   * (index `owner`), merged by sort key, so every page is full and the last one has no `next`.
   */
  async listTrainings(owners: readonly string[], limit: number, cursor?: string): Promise<Page<TrainingRecord>> {
    const sources: Source[] = owners.includes('*')
      ? [{ index: 'list', key: 'listpk', value: 'TRAININGS' }]
      : [...new Set(owners)].map((o) => ({ index: 'owner', key: 'owner', value: o }));
    return this.pageOf<TrainingRecord>(sources, limit, cursor);
  }

  /**
   * Sets fields (dotted paths reach into maps: `run.started`). With `onlyIf.status`, the write
   * happens only while the training is in one of those statuses; returns null when it did not.
   */
  async updateTraining(
    id: string,
    fields: Record<string, unknown>,
    onlyIf: { status?: Status[]; notCancelRequested?: boolean } = {},
  ): Promise<TrainingRecord | null> {
    const names: Record<string, string> = { '#pk': 'pk' };
    const values: Record<string, unknown> = {};
    const sets = Object.entries(fields).map(([path, value], i) => {
      const parts = path.split('.').map((p, j) => {
        names[`#f${i}_${j}`] = p;
        return `#f${i}_${j}`;
      });
      values[`:v${i}`] = value;
      return `${parts.join('.')} = :v${i}`;
    });
    const conds = ['attribute_exists(#pk)'];
    if (onlyIf.status) {
      names['#status'] = 'status';
      const keys = onlyIf.status.map((s, i) => {
        values[`:s${i}`] = s;
        return `:s${i}`;
      });
      conds.push(`#status IN (${keys.join(', ')})`);
    }
    if (onlyIf.notCancelRequested) {
      names['#cr'] = 'cancel_requested';
      values[':false'] = false;
      conds.push('#cr = :false');
    }
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: trainingKey(id),
          UpdateExpression: `SET ${sets.join(', ')}`,
          ConditionExpression: conds.join(' AND '),
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return strip<TrainingRecord>(out.Attributes);
    } catch (e) {
      if ((e as Error).name === 'ConditionalCheckFailedException') return null;
      throw e;
    }
  }

  /**
   * Idempotent: writing the same version twice keeps the first record. Writes its id's alias
   * beside it (the first model to push an id keeps it); versions written before the alias
   * existed are found by `owner/name:version` only.
   */
  async putVersion(v: VersionRecord): Promise<VersionRecord> {
    const put = async (Item: Record<string, unknown>) => {
      try {
        await this.db.send(new PutCommand({ TableName: this.table, Item, ConditionExpression: 'attribute_not_exists(pk)' }));
        return true;
      } catch (e) {
        if ((e as Error).name !== 'ConditionalCheckFailedException') throw e;
        return false;
      }
    };
    const created = await put({ ...versionKey(v.model, v.id), listpk: `VERSIONS#${v.model}`, listsk: `${v.created_at}#${v.id}`, ...v });
    await put({ ...versionAliasKey(v.id), model: v.model });
    return created ? v : (await this.getVersion(v.model, v.id))!;
  }

  /** The version of a bare version id, through its alias; null when unknown (or written before aliases). */
  async findVersion(id: string): Promise<VersionRecord | null> {
    const alias = await this.db.send(new GetCommand({ TableName: this.table, Key: versionAliasKey(id) }));
    const model = alias.Item?.model;
    return typeof model === 'string' ? this.getVersion(model, id) : null;
  }

  async getVersion(model: string, id: string): Promise<VersionRecord | null> {
    const out = await this.db.send(new GetCommand({ TableName: this.table, Key: versionKey(model, id) }));
    return strip<VersionRecord>(out.Item);
  }

  async listVersions(model: string, limit: number, cursor?: string): Promise<Page<VersionRecord>> {
    return this.pageOf<VersionRecord>([{ index: 'list', key: 'listpk', value: `VERSIONS#${model}` }], limit, cursor);
  }

  /**
   * Newest first; cursors move by sort key (`<created_at>#<id>`, the same in every index), so
   * pages stay stable while new items arrive and one cursor serves several partitions: each
   * gives at most limit + 1 items past it, and the first limit + 1 of their union decide.
   */
  async pageOf<T = Record<string, unknown>>(sources: readonly Source[], limit: number, cursor?: string): Promise<Page<T>> {
    const c = decodeCursor(cursor);
    const back = c?.dir === 'prev';
    const parts = await Promise.all(sources.map((src) => this.query(src, limit + 1, c, back)));
    const order = (a: Record<string, unknown>, b: Record<string, unknown>) => (a.listsk as string).localeCompare(b.listsk as string) * (back ? 1 : -1);
    const items = parts.flat().sort(order);
    const more = items.length > limit;
    const shown = items.slice(0, limit);
    if (back) shown.reverse();
    const first = shown[0]?.listsk as string | undefined;
    const last = shown[shown.length - 1]?.listsk as string | undefined;
    const hasNext = back ? c !== undefined : more;
    const hasPrev = back ? more : c !== undefined;
    return {
      results: shown.map((i) => strip<T>(i)!),
      next: hasNext && last ? encodeCursor({ dir: 'next', at: last }) : null,
      previous: hasPrev && first ? encodeCursor({ dir: 'prev', at: first }) : null,
    };
  }

  private async query(src: Source, limit: number, c: Cursor | undefined, back: boolean): Promise<Record<string, unknown>[]> {
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: src.index,
        KeyConditionExpression: c ? `#k = :p AND listsk ${back ? '>' : '<'} :at` : '#k = :p',
        ExpressionAttributeNames: { '#k': src.key },
        ExpressionAttributeValues: c ? { ':p': src.value, ':at': c.at } : { ':p': src.value },
        ScanIndexForward: back,
        Limit: limit,
      }),
    );
    return out.Items ?? [];
  }
}

/** One index partition a list reads. */
export interface Source {
  index: string;
  key: string;
  value: string;
}
