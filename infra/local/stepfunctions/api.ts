/**
 * The Step Functions JSON protocol operations local mode needs, over LocalStepFunctions.
 * Dates are epoch seconds, as the SDK's JSON protocol expects.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { AwsError } from '../errors.ts';
import { STATUSES, type ExecutionRecord } from './executions.ts';
import type { LocalStepFunctions } from './executor.ts';
import type { TaskTokens } from './tokens.ts';

// AWS: 1–80 characters; no whitespace, brackets, wildcards, control or listed special characters.
const NAME = /^[^\s<>{}[\]?*"#%\\^|~`$&,;:/\u0000-\u001f\u007f-\u009f]{1,80}$/;

const StartExecution = z.object({ stateMachineArn: z.string(), name: z.string().optional(), input: z.string().optional() });
const ExecutionRef = z.object({ executionArn: z.string() });
const StopExecution = ExecutionRef.extend({ error: z.string().optional(), cause: z.string().optional() });
const ListExecutions = z.object({
  stateMachineArn: z.string(),
  statusFilter: z.enum(STATUSES).optional(),
  maxResults: z.number().int().min(0).max(1000).optional(),
  nextToken: z.string().optional(),
});
const TaskToken = z.object({ taskToken: z.string().min(1) });
const SendTaskSuccess = TaskToken.extend({ output: z.string() });
const SendTaskFailure = TaskToken.extend({ error: z.string().optional(), cause: z.string().optional() });

type Operation = (body: unknown) => unknown;

/** The operations over every local state machine (by ARN); task tokens are shared, as on AWS. */
export function stepFunctionsApi(machines: LocalStepFunctions[], tokens: TaskTokens): Record<string, Operation> {
  const machine = (arn: string) => {
    const sfn = machines.find((m) => m.stateMachineArn === arn);
    if (!sfn) throw new AwsError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
    return sfn;
  };
  const runnerOf = (executionArn: string) => {
    const sfn = machines.find((m) => m.owns(executionArn));
    if (!sfn) throw new AwsError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    return sfn;
  };
  return {
    StartExecution: (body) => {
      const req = StartExecution.parse(body);
      const sfn = machine(req.stateMachineArn);
      const name = req.name ?? randomUUID();
      if (!NAME.test(name)) throw new AwsError('InvalidName', `Invalid Name: '${name}'`);
      const input = req.input ?? '{}';
      parseJson(input, 'InvalidExecutionInput');
      const rec = sfn.start(name, input);
      return { executionArn: rec.executionArn, startDate: seconds(rec.startDate) };
    },
    DescribeExecution: (body) => {
      const { executionArn } = ExecutionRef.parse(body);
      return describe(runnerOf(executionArn).describe(executionArn));
    },
    StopExecution: (body) => {
      const req = StopExecution.parse(body);
      return { stopDate: seconds(runnerOf(req.executionArn).stop(req.executionArn, req.error, req.cause).stopDate ?? Date.now()) };
    },
    ListExecutions: (body) => {
      const req = ListExecutions.parse(body);
      return listExecutions(machine(req.stateMachineArn), req);
    },
    SendTaskSuccess: (body) => {
      const req = SendTaskSuccess.parse(body);
      tokens.succeed(req.taskToken, parseJson(req.output, 'InvalidOutput'));
      return {};
    },
    SendTaskFailure: (body) => {
      const req = SendTaskFailure.parse(body);
      tokens.fail(req.taskToken, req.error ?? 'States.TaskFailed', req.cause ?? '');
      return {};
    },
    SendTaskHeartbeat: (body) => {
      tokens.heartbeat(TaskToken.parse(body).taskToken);
      return {};
    },
  };
}

function listExecutions(sfn: LocalStepFunctions, req: z.infer<typeof ListExecutions>) {
  const all = sfn.list().filter((e) => !req.statusFilter || e.status === req.statusFilter);
  const offset = req.nextToken ? decodeOffset(req.nextToken) : 0;
  const size = req.maxResults || 100;
  const page = all.slice(offset, offset + size);
  const more = offset + size < all.length;
  return {
    executions: page.map(summary),
    nextToken: more ? Buffer.from(JSON.stringify({ offset: offset + size })).toString('base64url') : undefined,
  };
}

/** ListExecutions' item; DescribeExecution adds input, output and the error. */
function summary(e: ExecutionRecord) {
  return {
    executionArn: e.executionArn,
    stateMachineArn: e.stateMachineArn,
    name: e.name,
    status: e.status,
    startDate: seconds(e.startDate),
    stopDate: e.stopDate === undefined ? undefined : seconds(e.stopDate),
  };
}

function describe(e: ExecutionRecord) {
  return {
    ...summary(e),
    input: e.input,
    inputDetails: { included: true },
    output: e.output,
    outputDetails: e.output === undefined ? undefined : { included: true },
    error: e.error,
    cause: e.cause,
  };
}

function decodeOffset(token: string): number {
  try {
    const { offset } = z.object({ offset: z.number().int().min(0) }).parse(JSON.parse(Buffer.from(token, 'base64url').toString()));
    return offset;
  } catch {
    throw new AwsError('InvalidToken', 'Invalid Token: not a ListExecutions nextToken');
  }
}

function parseJson(text: string, errorType: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new AwsError(errorType, 'Invalid JSON');
  }
}

const seconds = (ms: number) => ms / 1000;
