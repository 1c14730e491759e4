/**
 * A demo trainer server whose last port another process took serves on another port
 * (./ports.ts), and its runs must follow it: the trainings pinned to its old URL (`run.server`)
 * and the held executions whose position carries it (a slot granted before the stop) are
 * pointed at the new URL before anything resumes. Otherwise they would wait on a port that is
 * no longer theirs, holding their slots, and the whole queue behind them.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { Store } from '#shared/store';
import type { LocalAws } from './aws.ts';
import { localClient } from './clients.ts';
import type { MovedServer } from './ports.ts';

export async function followMovedServers(aws: LocalAws, moved: MovedServer[], note: (line: string) => void): Promise<void> {
  if (moved.length === 0) return;
  const db = DynamoDBDocumentClient.from(localClient(aws.env, DynamoDBClient, aws.env.AWS_ENDPOINT_URL_DYNAMODB));
  const store = new Store(db, aws.table);
  for (const { from, to } of moved) {
    const executions = aws.executions.retarget(from, to);
    let trainings = 0;
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await db.send(
        new ScanCommand({
          TableName: aws.table,
          FilterExpression: 'sk = :sk AND #run.#server = :from',
          ExpressionAttributeNames: { '#run': 'run', '#server': 'server' },
          ExpressionAttributeValues: { ':sk': 'TRAINING', ':from': from },
          ExclusiveStartKey,
        }),
      );
      for (const item of page.Items ?? []) if (await store.updateTraining(item.id as string, { 'run.server': to })) trainings++;
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    note(
      `a demo trainer server could not have its port back and moved from ${from} to ${to}: ${trainings} trainings and ${executions} executions follow it`,
    );
  }
}
