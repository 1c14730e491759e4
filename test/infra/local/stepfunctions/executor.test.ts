import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DescribeExecutionCommand,
  ListExecutionsCommand,
  SFNClient,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  StartExecutionCommand,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { pollUntil, startLocalAws, type ExecutionEvent, type LocalAws, type TaskContext } from '#infra/local/aws';
import { testTable } from '#test-helpers/table';

const callbackTask = (heartbeatSeconds: number) => ({
  Type: 'Task',
  Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
  Parameters: { FunctionName: 'starter', Payload: { 'id.$': '$.id', 'task_token.$': '$$.Task.Token', 'execution.$': '$$.Execution.Name' } },
  TimeoutSeconds: 60,
  HeartbeatSeconds: heartbeatSeconds,
  ResultPath: '$.callback',
  Catch: [{ ErrorEquals: ['TrainerFailed', 'States.HeartbeatTimeout'], ResultPath: '$.error', Next: 'Record failure' }],
  Next: 'Done',
});
const lambdaTask = (timeoutSeconds: number) => ({
  Type: 'Task',
  Resource: 'arn:aws:states:::lambda:invoke',
  Parameters: { FunctionName: 'worker', 'Payload.$': '$' },
  TimeoutSeconds: timeoutSeconds,
  ResultPath: '$.work',
  Catch: [{ ErrorEquals: ['BadArchive'], ResultPath: '$.error', Next: 'Record failure' }],
  Next: 'Done',
});

/** A small machine with one path per behaviour under test, chosen by `$.mode`. */
const definition = {
  StartAt: 'Route',
  States: {
    Route: {
      Type: 'Choice',
      Choices: [
        { Variable: '$.mode', StringEquals: 'heartbeat', Next: 'Wait with a short heartbeat' },
        { Variable: '$.mode', StringEquals: 'work', Next: 'Do the work' },
        { Variable: '$.mode', StringEquals: 'hang', Next: 'Hang until stopped' },
      ],
      Default: 'Wait for callback',
    },
    'Wait for callback': callbackTask(30),
    'Wait with a short heartbeat': callbackTask(1),
    'Do the work': lambdaTask(1),
    'Hang until stopped': lambdaTask(60),
    'Record failure': { Type: 'Pass', Parameters: { 'caught.$': '$.error' }, End: true },
    Done: { Type: 'Succeed' },
  },
};

interface Call {
  state: string;
  input: any;
  ctx: TaskContext;
}
const calls: Call[] = [];
const aborted = new Set<string>();
const events: ExecutionEvent[] = [];
const logs: string[] = [];

/** Records each call; `work` throws the error named in the input, `hang` waits for its signal. */
function recorder(state: string) {
  return async (input: any, ctx: TaskContext) => {
    calls.push({ state, input, ctx });
    ctx.signal.addEventListener('abort', () => aborted.add(ctx.executionName));
    const payload = input.Payload;
    if (payload?.throw) throw Object.assign(new Error(`failed on purpose: ${payload.throw}`), { name: payload.throw });
    if (payload?.mode === 'work' || payload?.mode === 'hang') {
      if (payload.mode === 'work' && !payload.sleep) return { worked: payload.id, at: new Date(0) };
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
    }
    return 'ignored for callback tasks';
  };
}

let dataDir: string;
let local: LocalAws;
let sfn: SFNClient;
let seq = 0;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'local-aws-sfn-'));
  local = await startLocalAws({
    dataDir,
    table: testTable(),
    definition,
    taskHandlers: Object.fromEntries(
      ['Wait for callback', 'Wait with a short heartbeat', 'Do the work', 'Hang until stopped'].map((s) => [s, recorder(s)]),
    ),
    secrets: {},
    lambdas: {},
    onExecutionEvent: (e) => events.push(e),
    log: (line) => logs.push(line),
  });
  Object.assign(process.env, local.env);
  sfn = new SFNClient({});
});

afterAll(async () => {
  sfn?.destroy();
  await local?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

async function start(input: Record<string, unknown>, name = `exec-${++seq}`) {
  const body = JSON.stringify({ mode: 'callback', ...input });
  const out = await sfn.send(new StartExecutionCommand({ stateMachineArn: local.stateMachineArn, name, input: body }));
  return out.executionArn!;
}
const callOf = (executionArn: string) =>
  pollUntil(() => calls.findLast((c) => c.ctx.executionArn === executionArn), { what: 'the task handler' });
const describeDone = async (executionArn: string) => {
  await local.executions.whenDone(executionArn);
  return sfn.send(new DescribeExecutionCommand({ executionArn }));
};
const errorName = (p: Promise<unknown>) => p.then(() => 'no error', (e: Error) => e.name);

describe('waitForTaskToken', () => {
  it('hands the handler a fresh token in the payload and completes on SendTaskSuccess', async () => {
    const arn = await start({ id: 'one' });
    const first = await callOf(arn);
    const token = first.ctx.taskToken!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43,}$/);
    expect(first.input.Payload).toEqual({ id: 'one', task_token: token, execution: arn.split(':').pop() });

    await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify({ output_url: 'http://x/y.zip' }) }));
    const done = await describeDone(arn);

    expect(done.status).toBe('SUCCEEDED');
    expect(JSON.parse(done.output!)).toEqual({ mode: 'callback', id: 'one', callback: { output_url: 'http://x/y.zip' } });
    expect(done.startDate).toBeInstanceOf(Date);
    expect(done.stopDate!.getTime()).toBeGreaterThanOrEqual(done.startDate!.getTime());
    expect(await errorName(sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' })))).toMatch(
      /^(TaskTimedOut|TaskDoesNotExist)$/,
    );

    const second = await callOf(await start({ id: 'two' }));
    expect(second.ctx.taskToken).not.toBe(token);
    await sfn.send(new SendTaskSuccessCommand({ taskToken: second.ctx.taskToken!, output: '{}' }));
  });

  it('routes SendTaskFailure into the Catch that names its error', async () => {
    const arn = await start({ id: 'fail' });
    const { ctx } = await callOf(arn);
    await sfn.send(new SendTaskFailureCommand({ taskToken: ctx.taskToken!, error: 'TrainerFailed', cause: 'out of memory' }));
    const done = await describeDone(arn);
    expect(done.status).toBe('SUCCEEDED');
    expect(JSON.parse(done.output!).caught).toEqual({ Error: 'TrainerFailed', Cause: 'out of memory' });
  });

  it('rejects tokens it never issued', async () => {
    expect(await errorName(sfn.send(new SendTaskSuccessCommand({ taskToken: 'not-a-token', output: '{}' })))).toBe('InvalidToken');
    const unknown = Buffer.alloc(32, 7).toString('base64url');
    expect(await errorName(sfn.send(new SendTaskHeartbeatCommand({ taskToken: unknown })))).toBe('TaskDoesNotExist');
  });

  it('keeps a task alive on heartbeats and fails it with States.HeartbeatTimeout when they stop', async () => {
    const kept = await start({ id: 'beating', mode: 'heartbeat' });
    const { ctx } = await callOf(kept);
    for (let i = 0; i < 8; i++) {
      await sfn.send(new SendTaskHeartbeatCommand({ taskToken: ctx.taskToken! }));
      await new Promise((r) => setTimeout(r, 300));
    }
    await sfn.send(new SendTaskSuccessCommand({ taskToken: ctx.taskToken!, output: '{"alive":true}' }));
    expect(JSON.parse((await describeDone(kept)).output!).callback).toEqual({ alive: true });

    const lapsed = await start({ id: 'silent', mode: 'heartbeat' });
    const silent = await callOf(lapsed);
    const done = await describeDone(lapsed);
    expect(JSON.parse(done.output!).caught.Error).toBe('States.HeartbeatTimeout');
    expect(aborted.has(silent.ctx.executionName)).toBe(true);
    expect(await errorName(sfn.send(new SendTaskHeartbeatCommand({ taskToken: silent.ctx.taskToken! })))).toBe('TaskTimedOut');
  });
});

describe('task handlers', () => {
  it('turns a thrown error name into the state error, for Catch and for the execution', async () => {
    const caught = await describeDone(await start({ id: 'bad', mode: 'work', throw: 'BadArchive' }));
    expect(JSON.parse(caught.output!).caught.Error).toBe('BadArchive');

    const failed = await describeDone(await start({ id: 'oops', mode: 'work', throw: 'Unexpected' }));
    expect(failed.status).toBe('FAILED');
    expect(failed.error).toBe('Unexpected');
    expect(JSON.parse(failed.cause!)).toEqual({ errorType: 'Unexpected', errorMessage: 'failed on purpose: Unexpected' });
  });

  it('passes the result on as JSON', async () => {
    const done = await describeDone(await start({ id: 'w', mode: 'work' }));
    expect(JSON.parse(done.output!).work).toEqual({ worked: 'w', at: '1970-01-01T00:00:00.000Z' });
  });

  it('aborts the handler and fails the task with States.Timeout after TimeoutSeconds', async () => {
    const arn = await start({ id: 'slow', mode: 'work', sleep: true });
    const done = await describeDone(arn);
    expect(done.status).toBe('FAILED');
    expect(done.error).toBe('States.Timeout');
    expect(aborted.has(arn.split(':').pop()!)).toBe(true);
  });
});

describe('executions', () => {
  it('StopExecution aborts the run and signals the running handler', async () => {
    const arn = await start({ id: 'hang', mode: 'hang' });
    await callOf(arn);
    await sfn.send(new StopExecutionCommand({ executionArn: arn, error: 'Canceled', cause: 'by test' }));
    const done = await describeDone(arn);
    expect(done).toMatchObject({ status: 'ABORTED', error: 'Canceled', cause: 'by test' });
    await pollUntil(() => (aborted.has(arn.split(':').pop()!) ? true : undefined), { what: 'the abort signal' });
  });

  it('closes the task token of a stopped execution', async () => {
    const arn = await start({ id: 'cb' });
    const { ctx } = await callOf(arn);
    await sfn.send(new StopExecutionCommand({ executionArn: arn }));
    expect(await errorName(sfn.send(new SendTaskSuccessCommand({ taskToken: ctx.taskToken!, output: '{}' })))).toMatch(
      /^(TaskTimedOut|TaskDoesNotExist)$/,
    );
  });

  it('is idempotent for the same name and input while running, and refuses anything else', async () => {
    const arn = await start({ id: 'same' }, 'same-name');
    expect(await start({ id: 'same' }, 'same-name')).toBe(arn);
    expect(await errorName(start({ id: 'different' }, 'same-name'))).toBe('ExecutionAlreadyExists');

    const { ctx } = await callOf(arn);
    await sfn.send(new SendTaskSuccessCommand({ taskToken: ctx.taskToken!, output: '{}' }));
    await describeDone(arn);
    expect(await errorName(start({ id: 'same' }, 'same-name'))).toBe('ExecutionAlreadyExists');
    expect(await errorName(start({ id: 'x' }, 'bad name'))).toBe('InvalidName');
    expect(await errorName(sfn.send(new DescribeExecutionCommand({ executionArn: `${arn}-nope` })))).toBe('ExecutionDoesNotExist');
  });

  it('lists executions newest first, filtered and paged', async () => {
    const older = await start({ id: 'list-1' });
    const newer = await start({ id: 'list-2' });
    const page1 = await sfn.send(new ListExecutionsCommand({ stateMachineArn: local.stateMachineArn, statusFilter: 'RUNNING', maxResults: 1 }));
    expect(page1.executions!.map((e) => e.executionArn)).toEqual([newer]);
    const page2 = await sfn.send(
      new ListExecutionsCommand({ stateMachineArn: local.stateMachineArn, statusFilter: 'RUNNING', maxResults: 1, nextToken: page1.nextToken }),
    );
    expect(page2.executions!.map((e) => e.executionArn)).toEqual([older]);
    expect(page2.nextToken).toBeUndefined();

    const all = await sfn.send(new ListExecutionsCommand({ stateMachineArn: local.stateMachineArn }));
    expect(all.executions!.length).toBe(local.executions.list().length);
    expect(all.executions!.some((e) => e.status === 'SUCCEEDED')).toBe(true);
    for (const arn of [older, newer]) await sfn.send(new StopExecutionCommand({ executionArn: arn }));
  });

  it('reports progress without ever including a task token', async () => {
    const arn = await start({ id: 'events' });
    const { ctx } = await callOf(arn);
    await sfn.send(new SendTaskSuccessCommand({ taskToken: ctx.taskToken!, output: '{}' }));
    await describeDone(arn);
    const mine = await pollUntil(() => {
      const seen = events.filter((e) => e.executionArn === arn);
      return seen.some((e) => e.type === 'ExecutionSucceeded') ? seen : undefined;
    });
    expect(mine.map((e) => [e.type, e.state ?? e.status])).toEqual([
      ['StateEntered', 'Route'],
      ['StateEntered', 'Wait for callback'],
      ['StateEntered', 'Done'],
      ['ExecutionSucceeded', 'SUCCEEDED'],
    ]);
    const issued = calls.map((c) => c.ctx.taskToken).filter(Boolean) as string[];
    const printed = JSON.stringify(events) + logs.join('\n');
    expect(issued.filter((t) => printed.includes(t))).toEqual([]);
  });
});
