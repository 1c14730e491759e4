/**
 * `Idempotency-Key` on the create routes, through Powertools' idempotency utility: the key is
 * claimed (in progress) before the training (or prediction) is written; if the create throws (the write
 * fails, StartExecution fails), the claim is deleted, so a retry with the same key really
 * retries instead of replaying a failure or waiting forever. A completed key replays the
 * training it created (as it is now) for 24 h; the record carries a DynamoDB TTL attribute,
 * and a record past its expiry that TTL has not yet deleted counts as absent (Powertools'
 * conditional put and its expiry check), which matters on dynalite, which never deletes.
 */
// Imported statically: a lazy import() made esbuild keep all of client-dynamodb (every
// command's schema) in the api bundle, which cost the cold start more than it saved.
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { DynamoDBPersistenceLayer } from '@aws-lambda-powertools/idempotency/dynamodb';
import type { Context } from 'aws-lambda';
import { ApiError, badRequest } from '#shared/errors';
import { sha256Hex } from '#shared/ids';
import { IDEMPOTENCY, type Store } from '#shared/store';
import type { TrainingRecord } from '#shared/training';

/** How long a claim blocks others when its Lambda died mid-request: the api function's timeout. */
const IN_PROGRESS_MS = 29_000;

const layers = new WeakMap<Store, DynamoDBPersistenceLayer>();

/**
 * The table's own keys: all records in partition `IDEMPOTENCY.partition` (Powertools puts a
 * static partition key when the table has a sort key), one item per key. One partition is
 * ample for creates, each of which starts minutes of GPU work.
 */
function layerFor(store: Store): DynamoDBPersistenceLayer {
  let layer = layers.get(store);
  if (!layer) {
    layer = new DynamoDBPersistenceLayer({
      tableName: store.table,
      awsSdkV3Client: store.client,
      keyAttr: 'pk',
      sortKeyAttr: 'sk',
      staticPkValue: IDEMPOTENCY.partition,
      expiryAttr: IDEMPOTENCY.expiryAttribute,
    });
    layers.set(store, layer);
  }
  return layer;
}

export interface IdempotentRequest {
  key: string | undefined;
  owners: string[];
  path: string;
  body: string | null;
}

/**
 * Runs `create` at most once per key and body; without a key, just runs it. Answers the
 * training it created, or on a replay the earlier one as it is now.
 */
export function idempotently(store: Store, req: IdempotentRequest, create: () => Promise<TrainingRecord>): Promise<TrainingRecord> {
  return claimOnce(req, { prefix: 'create-training', field: 'training_id', load: (id) => store.getTraining(id) }, store, create);
}

/** What one kind of create keeps under its keys: its prefix, the id's field, how to read it again. */
export interface CreatedKind<T> {
  prefix: string;
  field: string;
  load(id: string): Promise<T | null>;
}

/** idempotently, for any kind of created item (trainings, predictions). */
export async function claimOnce<T extends { id: string }>(req: IdempotentRequest, kind: CreatedKind<T>, store: Store, create: () => Promise<T>): Promise<T> {
  const key = req.key?.trim();
  if (!key) return create();
  if (key.length > 255) throw badRequest('Idempotency-Key: at most 255 characters');
  // Keys are scoped to the token's owners; the path and body must match on a replay.
  const claim = { scope: sha256Hex(`${[...req.owners].sort().join(',')}\n${key}`), body: sha256Hex(`${req.path}\n${req.body ?? ''}`) };
  let created: T | undefined;
  const run = makeIdempotent(
    async (_claim: typeof claim) => {
      created = await create();
      return { [kind.field]: created.id };
    },
    {
      persistenceStore: layerFor(store),
      keyPrefix: kind.prefix,
      config: new IdempotencyConfig({
        eventKeyJmesPath: 'scope',
        payloadValidationJmesPath: 'body',
        expiresAfterSeconds: IDEMPOTENCY.ttlSeconds,
        hashFunction: 'sha256',
        throwOnNoIdempotencyKey: true,
        lambdaContext: { getRemainingTimeInMillis: () => IN_PROGRESS_MS } as Context,
      }),
    },
  );
  try {
    const id = (await run(claim))[kind.field] as string;
    const t = created ?? (await kind.load(id));
    if (!t) throw new Error(`${kind.field} ${id} of a completed Idempotency-Key is missing`);
    return t;
  } catch (e) {
    const name = (e as Error).name;
    if (name === 'IdempotencyValidationError') throw new ApiError(409, 'Idempotency-Key was already used with another request body; use a new key');
    if (name === 'IdempotencyAlreadyInProgressError') throw new ApiError(409, 'the request with this Idempotency-Key is still being processed; retry shortly');
    throw e;
  }
}
