/** A replicate trainer's prediction ledger: each run's Replicate prediction id, in the service's table. */
import { DeleteCommand, GetCommand, PutCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/**
 * Where a run's Replicate prediction id is kept. The start claims the run BEFORE it creates
 * the prediction and records the id AFTER: a retried start that finds the id resumes that
 * prediction, and one that finds a bare claim knows an earlier create may have succeeded
 * without its answer arriving. It then refuses to create another (that would train and bill
 * twice) and fails the run; failures that prove nothing was created give the claim back.
 */
export interface PredictionLedger {
  /** null: never claimed; `predictionId` null: claimed, id not (yet) known. */
  get(runId: string): Promise<{ predictionId: string | null } | null>;
  /** False when the run was claimed before. */
  claim(runId: string): Promise<boolean>;
  /** Only the claim's holder records, so this needs no condition. */
  record(runId: string, predictionId: string): Promise<void>;
  release(runId: string): Promise<void>;
}

const ledgerKey = (runId: string) => ({ pk: `REPLICATE#${runId}`, sk: 'REPLICATE' });
const conditionFailed = (e: unknown) => (e as Error).name === 'ConditionalCheckFailedException';

/** The ledger as one item per run in the service's table (conditional writes only). */
export class DynamoPredictionLedger implements PredictionLedger {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async get(runId: string) {
    const out = await this.db.send(new GetCommand({ TableName: this.table, Key: ledgerKey(runId), ConsistentRead: true }));
    if (!out.Item) return null;
    return { predictionId: typeof out.Item.prediction_id === 'string' ? out.Item.prediction_id : null };
  }

  async claim(runId: string): Promise<boolean> {
    const Item = { ...ledgerKey(runId), claimed_at: new Date().toISOString() };
    try {
      await this.db.send(new PutCommand({ TableName: this.table, Item, ConditionExpression: 'attribute_not_exists(pk)' }));
      return true;
    } catch (e) {
      if (conditionFailed(e)) return false;
      throw e;
    }
  }

  async record(runId: string, predictionId: string): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: ledgerKey(runId),
        UpdateExpression: 'SET prediction_id = :id',
        ExpressionAttributeValues: { ':id': predictionId },
      }),
    );
  }

  async release(runId: string): Promise<void> {
    await this.db
      .send(new DeleteCommand({ TableName: this.table, Key: ledgerKey(runId), ConditionExpression: 'attribute_not_exists(prediction_id)' }))
      .catch((e: unknown) => {
        if (!conditionFailed(e)) throw e;
      });
  }
}
