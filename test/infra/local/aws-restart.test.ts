import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it, vi } from 'vitest';
import { DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { waitingMachine } from '#test-helpers/waiting-machine';
import { pollUntil, startLocalAws, type ExecutionEvent, type LocalAws } from '#infra/local/aws';
import { testTable } from '#test-helpers/table';

const definition = waitingMachine('Wait for callback', 'starter');

const startedTasks: string[] = [];
const stoppedTasks: string[] = [];
const start = (dataDir: string, events: ExecutionEvent[] = []) =>
  startLocalAws({
    dataDir,
    table: testTable(),
    definition,
    taskHandlers: {
      'Wait for callback': async (_input, ctx) => {
        startedTasks.push(ctx.executionName);
        ctx.signal.addEventListener('abort', () => stoppedTasks.push(ctx.executionName));
      },
    },
    secrets: {},
    lambdas: {},
    onExecutionEvent: (e) => events.push(e),
  });

/** SDK clients built from process.env, as the handlers build theirs. */
function clientsFor(local: LocalAws) {
  Object.assign(process.env, local.env);
  return { dynamodb: new DynamoDBClient({}), sfn: new SFNClient({}) };
}

const servers = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap');
/** Timers created since the spy started that are still pending (Node marks spent timers destroyed). */
const pendingTimers = (spy: { mock: { results: { value: unknown }[] } }) =>
  spy.mock.results.map((r) => r.value as NodeJS.Timeout & { _destroyed?: boolean }).filter((t) => t.hasRef() && !t._destroyed);

it('keeps DynamoDB data, resumes executions that were running, and leaves no handles', async () => {
  const serversBefore = servers();
  const timers = vi.spyOn(globalThis, 'setTimeout');
  const dir = mkdtempSync(join(tmpdir(), 'local-aws-restart-'));
  const first = await start(dir);
  const one = clientsFor(first);
  const item = { pk: { S: 'TRAINING#kept' }, sk: { S: 'TRAINING' }, status: { S: 'processing' } };
  await one.dynamodb.send(new PutItemCommand({ TableName: first.table, Item: item }));
  const { executionArn } = await one.sfn.send(
    new StartExecutionCommand({ stateMachineArn: first.stateMachineArn, name: 'cut-short', input: '{}' }),
  );
  await pollUntil(() => (startedTasks.length ? true : undefined), { what: 'the task handler' });
  one.dynamodb.destroy();
  one.sfn.destroy();
  await first.stop();
  expect(stoppedTasks).toEqual(['cut-short']);

  const events: ExecutionEvent[] = [];
  const second = await start(dir, events);
  const two = clientsFor(second);
  try {
    const got = await two.dynamodb.send(new GetItemCommand({ TableName: second.table, Key: { pk: item.pk, sk: item.sk } }));
    expect(got.Item).toEqual(item);
    expect(second.executions.resume()).toMatchObject({ resumed: [{ executionArn, name: 'cut-short' }], interrupted: [] });
    // Resumed at its wait: the task runs again, and the execution is still running.
    await pollUntil(() => (startedTasks.length === 2 ? true : undefined), { what: 'the resumed task' });
    expect(startedTasks).toEqual(['cut-short', 'cut-short']);
    await pollUntil(() => (events.length ? true : undefined), { what: 'the resumed state entered' });
    expect(events).toMatchObject([{ executionArn, name: 'cut-short', type: 'StateEntered', status: 'RUNNING', state: 'Wait for callback' }]);
    const described = await two.sfn.send(new DescribeExecutionCommand({ executionArn }));
    expect(described).toMatchObject({ status: 'RUNNING' });
  } finally {
    two.dynamodb.destroy();
    two.sfn.destroy();
    await second.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  expect(servers()).toEqual(serversBefore);
  expect(pendingTimers(timers)).toEqual([]);
  timers.mockRestore();
});
