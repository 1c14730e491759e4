/**
 * Several state machines in local mode: the template reader gives each its ARN by construct
 * path (Workflow/StateMachine for trainings, Serving/StateMachine for predictions, any other a
 * derived one) and its own rules; the Step Functions endpoint runs each by ARN, task tokens work
 * across them, and executions.json keeps all of them across a restart.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DescribeExecutionCommand,
  ListExecutionsCommand,
  SendTaskSuccessCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { afterAll, describe, expect, it } from 'vitest';
import { pollUntil, startLocalAws, type LocalAws } from '#infra/local/aws';
import { stateMachinesOf } from '#infra/local/cloudformation/state-machine';
import type { CfnTemplate } from '#infra/local/cloudformation/synthesize';
import { LOCAL_PREDICTION_STATE_MACHINE_ARN, LOCAL_STATE_MACHINE_ARN } from '#infra/local/names';
import { testTable } from '#test-helpers/table';
import { waitingMachine } from '#test-helpers/waiting-machine';

const [head, tail] = JSON.stringify(waitingMachine('Wait', 'FUNCTION')).split('FUNCTION') as [string, string];
const machine = (path: string, fn: string) => ({
  Type: 'AWS::StepFunctions::StateMachine',
  Properties: { DefinitionString: { 'Fn::Join': ['', [head, { 'Fn::GetAtt': [fn, 'Arn'] }, tail]] } },
  Metadata: { 'aws:cdk:path': `Dreambooth/${path}/Resource` },
});
const rule = (machineId: string, fn: string) => ({
  Type: 'AWS::Events::Rule',
  Properties: {
    EventPattern: { source: ['aws.states'], 'detail-type': ['Step Functions Execution Status Change'], detail: { stateMachineArn: [{ Ref: machineId }], status: ['FAILED'] } },
    Targets: [{ Arn: { 'Fn::GetAtt': [fn, 'Arn'] } }],
  },
});

describe('the template reader', () => {
  it('reads every state machine, each at its ARN with its own rules', () => {
    const template: CfnTemplate = {
      Resources: {
        Training: machine('Workflow/StateMachine', 'StartFn'),
        Predictions: machine('Serving/StateMachine', 'PredictFn'),
        Extra: machine('Housekeeping/StateMachine', 'StartFn'),
        TrainingEnded: rule('Training', 'CleanFn'),
        PredictionEnded: rule('Predictions', 'NotifyFn'),
      },
    };
    const functions = [
      { name: 'start-trainer', logicalId: 'StartFn', roleLogicalId: 'R1' },
      { name: 'predict', logicalId: 'PredictFn', roleLogicalId: 'R2' },
      { name: 'cleanup', logicalId: 'CleanFn', roleLogicalId: 'R3' },
      { name: 'notify', logicalId: 'NotifyFn', roleLogicalId: 'R4' },
    ] as never;
    const machines = stateMachinesOf({ template, functions });
    expect(machines.map((m) => [m.path, m.arn])).toEqual([
      ['Workflow/StateMachine', LOCAL_STATE_MACHINE_ARN],
      ['Serving/StateMachine', LOCAL_PREDICTION_STATE_MACHINE_ARN],
      ['Housekeeping/StateMachine', 'arn:aws:states:us-east-1:000000000000:stateMachine:dreambooth-housekeeping-statemachine'],
    ]);
    expect(machines[1]!.definition.taskHandlers).toEqual({ Wait: { kind: 'lambda', handler: 'predict', integration: 'waitForTaskToken' } });
    expect(machines[0]!.definition.executionStatusTargets).toEqual([{ handler: 'cleanup', statuses: ['FAILED'] }]);
    expect(machines[1]!.definition.executionStatusTargets).toEqual([{ handler: 'notify', statuses: ['FAILED'] }]);
    expect(machines[2]!.definition.executionStatusTargets).toEqual([]);
  });
});

describe('two state machines on the local endpoint', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'machines-'));
  const tokens = new Map<string, string>();
  let local: LocalAws;
  const start = () =>
    startLocalAws({
      dataDir,
      table: testTable(),
      definition: waitingMachine('Wait', 'starter'),
      taskHandlers: { Wait: async (_input, ctx) => void tokens.set(ctx.executionArn, ctx.taskToken!) },
      machines: [
        {
          stateMachineArn: LOCAL_PREDICTION_STATE_MACHINE_ARN,
          definition: waitingMachine('Predict', 'predict'),
          taskHandlers: { Predict: async (_input, ctx) => void tokens.set(ctx.executionArn, ctx.taskToken!) },
        },
      ],
      secrets: {},
      lambdas: {},
    });
  const client = () => new SFNClient({ region: 'us-east-1', endpoint: local.env.AWS_ENDPOINT_URL_SFN, credentials: { accessKeyId: local.env.AWS_ACCESS_KEY_ID!, secretAccessKey: local.env.AWS_SECRET_ACCESS_KEY! } });
  afterAll(async () => {
    await local?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts, lists, describes and stops each by ARN, and settles either by task token', async () => {
    local = await start();
    const sfn = client();
    expect(local.stateMachineArns).toEqual([LOCAL_STATE_MACHINE_ARN, LOCAL_PREDICTION_STATE_MACHINE_ARN]);
    const training = await sfn.send(new StartExecutionCommand({ stateMachineArn: LOCAL_STATE_MACHINE_ARN, name: 'same-name', input: '{}' }));
    const prediction = await sfn.send(new StartExecutionCommand({ stateMachineArn: LOCAL_PREDICTION_STATE_MACHINE_ARN, name: 'same-name', input: '{"prediction_id":"p"}' }));
    const other = await sfn.send(new StartExecutionCommand({ stateMachineArn: LOCAL_PREDICTION_STATE_MACHINE_ARN, name: 'other', input: '{}' }));
    expect(prediction.executionArn).toBe(`${LOCAL_PREDICTION_STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:same-name`);
    const listed = async (arn: string) => (await sfn.send(new ListExecutionsCommand({ stateMachineArn: arn }))).executions!.map((e) => e.executionArn);
    expect(await listed(LOCAL_STATE_MACHINE_ARN)).toEqual([training.executionArn]);
    expect((await listed(LOCAL_PREDICTION_STATE_MACHINE_ARN)).sort()).toEqual([prediction.executionArn, other.executionArn].sort());

    const token = await pollUntil(() => tokens.get(prediction.executionArn!), { what: "the prediction's task token" });
    await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{"done":true}' }));
    await local.executions.whenDone(prediction.executionArn!);
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn: prediction.executionArn }));
    expect(described).toMatchObject({ status: 'SUCCEEDED', output: '{"done":true}', stateMachineArn: LOCAL_PREDICTION_STATE_MACHINE_ARN });
    expect((await sfn.send(new DescribeExecutionCommand({ executionArn: training.executionArn }))).status).toBe('RUNNING');

    await sfn.send(new StopExecutionCommand({ executionArn: other.executionArn }));
    expect((await local.executions.whenDone(other.executionArn!)).status).toBe('ABORTED');
    sfn.destroy();
  });

  it('keeps every machine\'s executions across a restart, and resumes the running one on its own machine', async () => {
    await local.stop();
    tokens.clear();
    local = await start();
    const { resumed, interrupted } = local.executions.resume();
    expect(resumed.map((e) => [e.stateMachineArn, e.name])).toEqual([[LOCAL_STATE_MACHINE_ARN, 'same-name']]);
    expect(interrupted).toEqual([]);
    const arn = resumed[0]!.executionArn;
    // Re-entered, its wait task got a new token; answering it ends the execution.
    const token = await pollUntil(() => tokens.get(arn), { what: 'the resumed task token' });
    const sfnAgain = client();
    await sfnAgain.send(new SendTaskSuccessCommand({ taskToken: token, output: '{"after":"restart"}' }));
    expect(await local.executions.whenDone(arn)).toMatchObject({ status: 'SUCCEEDED', output: '{"after":"restart"}' });
    sfnAgain.destroy();
    const sfn = client();
    const all = await sfn.send(new ListExecutionsCommand({ stateMachineArn: LOCAL_PREDICTION_STATE_MACHINE_ARN }));
    expect(all.executions!.map((e) => e.status).sort()).toEqual(['ABORTED', 'SUCCEEDED']);
    sfn.destroy();
  });
});
