/**
 * Resuming after a restart, as a redrive does: from the state the execution was in, with that
 * state's input, the original start time where the definition reads it; what cannot resume
 * fails and says why. Positions are journaled per transition and survive a torn last line.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ExecutionStore, type ExecutionRecord } from '#infra/local/stepfunctions/executions';
import { LocalStepFunctions } from '#infra/local/stepfunctions/executor';
import { redriveOf } from '#infra/local/stepfunctions/resume';
import { TaskTokens } from '#infra/local/stepfunctions/tokens';

const ARN = 'arn:aws:states:us-east-1:000000000000:stateMachine:resume-test';
const lambda = (name: string, parameters: object, next?: string) => ({
  Type: 'Task',
  Resource: 'arn:aws:states:::lambda:invoke',
  Parameters: parameters,
  ResultPath: `$.${name}`,
  TimeoutSeconds: 10,
  ...(next ? { Next: next } : { End: true }),
});
/** Two steps; the second reads the execution's start time, as the trainer check does. */
const definition = {
  StartAt: 'One',
  States: {
    One: lambda('one', { 'n.$': '$.n' }, 'Two'),
    Two: lambda('two', { 'n.$': '$.n', 'started.$': '$$.Execution.StartTime', 'said.$': "States.Format('at {}', $$.Execution.StartTime)" }),
  },
};

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tempFile = () => {
  const d = mkdtempSync(join(tmpdir(), 'resume-'));
  dirs.push(d);
  return join(d, 'executions.json');
};

function executor(file: string, handlers: Record<string, (input: unknown) => Promise<unknown>>) {
  const store = new ExecutionStore(file);
  const found = store.load();
  const sfn = new LocalStepFunctions({
    definition,
    stateMachineArn: ARN,
    taskHandlers: handlers,
    store,
    tokens: new TaskTokens(),
    onEvent: () => undefined,
    log: () => undefined,
  });
  return { store, found, sfn };
}

describe('resuming an execution', () => {
  it('runs again from the state it was in, with its input and the original start time', async () => {
    const file = tempFile();
    let release!: () => void;
    const first = executor(file, {
      One: async () => 'one done',
      Two: () => new Promise((r) => (release = () => r('late'))),
    });
    const rec = first.sfn.start('x', '{"n":1}');
    await waitUntil(() => first.store.get(rec.executionArn)?.position?.state === 'Two');
    await first.sfn.shutdown();
    release();

    const seen: unknown[] = [];
    const ones: unknown[] = [];
    const second = executor(file, {
      One: async (input) => void ones.push(input),
      Two: async (input) => {
        seen.push(input);
        return 'two done';
      },
    });
    expect(second.found.map((e) => [e.name, e.position?.state])).toEqual([['x', 'Two']]);
    expect(second.sfn.resume(second.found[0]!)).toBe(true);
    const end = await second.sfn.whenDone(rec.executionArn);
    expect(ones).toEqual([]);
    const started = new Date(rec.startDate).toISOString();
    expect(seen).toEqual([{ n: 1, started, said: `at ${started}` }]);
    expect(end.status).toBe('SUCCEEDED');
    expect(JSON.parse(end.output!)).toEqual({ n: 1, one: 'one done', two: 'two done' });
  });

  it('fails, saying why, when its state is gone from the definition', async () => {
    const file = tempFile();
    const { store, sfn } = executor(file, { One: async () => null, Two: async () => null });
    const rec: ExecutionRecord = { executionArn: sfn.executionArn('gone'), stateMachineArn: ARN, name: 'gone', input: '{}', status: 'RUNNING', startDate: Date.now(), position: { state: 'Three', input: '{}' } };
    store.put(rec);
    expect(sfn.resume(rec)).toBe(false);
    expect(store.get(rec.executionArn)).toMatchObject({ status: 'FAILED', error: 'Local.Interrupted', cause: expect.stringMatching(/state "Three", which the state machine no longer has/) });
  });

  it('counts an execution timeout from the original start', () => {
    const rec: ExecutionRecord = { executionArn: 'a', stateMachineArn: ARN, name: 'a', input: '{"n":2}', status: 'RUNNING', startDate: 1_000_000 };
    const redrive = redriveOf({ ...definition, TimeoutSeconds: 100 }, rec, 1_000_000 + 40_000);
    expect(redrive).toMatchObject({ definition: { StartAt: 'One', TimeoutSeconds: 60 }, input: { n: 2 } });
  });
});

describe('the execution journal', () => {
  it('keeps the last position of each running execution, skips a torn line, and folds into the file', () => {
    const file = tempFile();
    const store = new ExecutionStore(file);
    store.load();
    const rec: ExecutionRecord = { executionArn: 'arn:x', stateMachineArn: ARN, name: 'x', input: '{}', status: 'RUNNING', startDate: 1 };
    store.put(rec);
    store.move('arn:x', { state: 'One', input: '{"a":1}' });
    store.move('arn:x', { state: 'Two', input: '{"a":2}' });
    appendFileSync(file.replace(/\.json$/, '.journal'), '{"arn":"arn:x","sta');
    const again = new ExecutionStore(file);
    expect(again.load().map((e) => e.position)).toEqual([{ state: 'Two', input: '{"a":2}' }]);
    expect(readFileSync(file.replace(/\.json$/, '.journal'), 'utf8')).toBe('');
    expect(JSON.parse(readFileSync(file, 'utf8')).executions[0].position).toEqual({ state: 'Two', input: '{"a":2}' });
  });
});

async function waitUntil(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!ok()) throw new Error('condition never held');
}
