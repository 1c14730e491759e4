/**
 * The demo trainer as deployed on AWS: a Lambda invoked asynchronously per run (see
 * lambdas/demo-trainer/handler.ts). Its callbacks are Cog-shaped predictions; its state for
 * status checks is the `DEMO#<run>` item it keeps up to date.
 */
import { GetCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { parsePrediction } from '../cog/trainer.ts';
import { validate } from '../../../demo-trainer/input.ts';
import { TrainerFailedError, TransientError, type InboundRequest, type Run, type RunState, type TrainerBackend } from '../types.ts';

export const demoKey = (runId: string) => ({ pk: `DEMO#${runId}`, sk: 'DEMO' });
/** A run whose item has not moved for this long has died with its invocation. */
const STALE_MS = 120_000;

/**
 * The deployed demo trainer: its name, and an asynchronous (`Event`) invocation of it answering
 * Lambda's status code. Built by lambdas/shared/deps.ts, so that only the functions that start
 * runs bundle the Lambda client's Invoke, not every function that reads the backends.
 */
export interface DemoTrainerFunction {
  name: string;
  invokeAsync(payload: unknown): Promise<number | undefined>;
}

export class DemoLambdaTrainer implements TrainerBackend {
  constructor(
    private readonly fn: DemoTrainerFunction,
    /** The service's table, where the trainer keeps its `DEMO#<run>` items. */
    private readonly store: { client: DynamoDBDocumentClient; table: string },
  ) {}

  async start(run: Run): Promise<RunState> {
    const problems = validate(run.input);
    if (problems.length) throw new TrainerFailedError(`the trainer refused the input: ${problems.map((p) => `${p.loc.slice(2).join('.')}: ${p.msg}`).join('; ')}`);
    const status = await this.fn.invokeAsync({ run_id: run.runId, input: run.input, webhook: run.callbackUrl });
    if (status !== 202) throw new TransientError(`the demo trainer was not invoked (${status})`);
    return { status: 'starting' };
  }

  async check(run: Run): Promise<RunState | 'lost'> {
    const item = (await this.store.client.send(new GetCommand({ TableName: this.store.table, Key: demoKey(run.runId), ConsistentRead: true }))).Item;
    if (!item) return { status: 'starting' };
    const state = parsePrediction(item.prediction as Record<string, unknown>);
    if (state.status === 'processing' && Date.now() - Number(item.updated_at) > STALE_MS) return 'lost';
    return state;
  }

  async cancel(runId: string): Promise<void> {
    await this.store.client
      .send(new UpdateCommand({ TableName: this.store.table, Key: demoKey(runId), UpdateExpression: 'SET cancel = :t', ConditionExpression: 'attribute_exists(pk)', ExpressionAttributeValues: { ':t': true } }))
      .catch((e: Error) => {
        if (e.name !== 'ConditionalCheckFailedException') throw e;
      });
  }

  async parseCallback(req: InboundRequest): Promise<RunState & { runId?: string }> {
    return parsePrediction(JSON.parse(req.body));
  }
}
