/**
 * prediction-notified through the local fixture: the prediction in local DynamoDB, the wait a
 * real execution's task token that local Step Functions settles (with the function's own IAM).
 */
import { DescribeExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type NotifiedDeps, onNotifications } from '#lambdas/prediction-notified/core';
import { logger, setLogSink } from '#shared/log';
import { PredictionStore } from '#shared/predictions/store';
import { type AsyncInferenceNotification, snsEventOf } from '#shared/serving/notification';
import { PredictionErrors } from '#shared/serving/steps';
import { type Fixture, startFixture } from '#test-helpers/aws-local';
import { newPrediction } from '../predict/records.ts';

let f: Fixture;
let d: NotifiedDeps;
const lines: string[] = [];

beforeAll(async () => {
  f = await startFixture({ as: 'prediction-notified' });
  d = f.deps;
  setLogSink((line) => lines.push(line));
}, 120_000);
afterAll(async () => {
  setLogSink((line) => process.stdout.write(`${line}\n`));
  await f?.stop();
});
afterEach(() => {
  lines.length = 0;
});

const TOPIC = 'arn:aws:sns:us-east-1:000000000000:ok';

function notification(id: string, over: Partial<AsyncInferenceNotification> = {}): AsyncInferenceNotification {
  return {
    awsRegion: 'us-east-1',
    eventTime: new Date().toISOString(),
    receivedTime: new Date().toISOString(),
    invocationStatus: 'Completed',
    inferenceId: id,
    eventName: 'InferenceResult',
    requestParameters: { endpointName: 'db-x-p-demo', inputLocation: `s3://${f.local.bucket}/predictions/${id}/request.json` },
    responseParameters: { contentType: 'application/json', outputLocation: `s3://${f.local.bucket}/predictions/${id}.out` },
    ...over,
  };
}

const notify = (n: AsyncInferenceNotification) => onNotifications(d, snsEventOf(TOPIC, n), logger('prediction-notified'));

/** A prediction in `processing` whose wait is a real execution's task token. */
async function waiting() {
  const task = await f.waitingTask();
  const p = await newPrediction(f.operator, { status: 'processing', started_at: new Date().toISOString(), task_token: task.token });
  return { p, ...task };
}

describe('prediction-notified', () => {
  it("ends the wait with the response's location when the request succeeded", async () => {
    const { p, executionArn } = await waiting();
    expect(await notify(notification(p.id))).toEqual(['success sent']);
    const done = await f.finished(executionArn);
    expect(done.status).toBe('SUCCEEDED');
    expect(JSON.parse(done.output!)).toEqual({ output_location: `s3://${f.local.bucket}/predictions/${p.id}.out` });
  });

  it("fails the wait with SageMaker's reason and where it wrote the failure", async () => {
    const { p, executionArn } = await waiting();
    const failureLocation = `s3://${f.local.bucket}/predictions/${p.id}-error.out`;
    const n = notification(p.id, { invocationStatus: 'Failed', failureReason: 'ClientError: Received server error (500) from model', responseParameters: { failureLocation } });
    expect(await notify(n)).toEqual(['failure sent']);
    const done = await f.finished(executionArn);
    expect(done.status).toBe('FAILED');
    expect(done.error).toBe(PredictionErrors.InferenceFailed);
    expect(JSON.parse(done.cause!)).toEqual({ reason: 'ClientError: Received server error (500) from model', failure_location: failureLocation });
  });

  it('drops a notification for no prediction, for an ended one, and for one whose wait is gone, never logging the token', async () => {
    const ended = await waiting();
    await new PredictionStore(f.operator.store).update(ended.p.id, { status: 'succeeded', completed_at: new Date().toISOString() });
    // Canceled: the api stopped the execution; the record still holds the token.
    const stopped = await waiting();
    await f.operator.sfn.send(new StopExecutionCommand({ executionArn: stopped.executionArn, error: 'PredictionCanceled' }));
    await f.finished(stopped.executionArn);
    const out = await onNotifications(
      d,
      { Records: [notification('nosuchprediction00000000000'), notification(ended.p.id), notification(stopped.p.id)].map((n) => snsEventOf(TOPIC, n).Records[0]!) },
      logger('prediction-notified'),
    );
    expect(out).toEqual(['dropped', 'dropped', 'dropped']);
    const reasons = lines.map((l) => JSON.parse(l)).filter((l) => l.message === 'dropped a notification').map((l) => l.reason);
    expect(reasons[0]).toBe('no such prediction');
    expect(reasons[1]).toBe('the prediction is succeeded');
    expect(reasons[2]).toMatch(/^its wait is gone \((TaskDoesNotExist|TaskTimedOut|InvalidToken)\)$/);
    // The ended prediction's wait was left alone.
    expect((await f.operator.sfn.send(new DescribeExecutionCommand({ executionArn: ended.executionArn }))).status).toBe('RUNNING');
    for (const token of [ended.token, stopped.token]) expect(lines.join('\n')).not.toContain(token);
  });

  it("drops a message that is not asynchronous inference's notification", async () => {
    const event = snsEventOf(TOPIC, notification('x'));
    event.Records[0]!.Sns.Message = JSON.stringify({ hello: 'world' });
    expect(await onNotifications(d, event, logger('prediction-notified'))).toEqual(['dropped']);
    expect(lines.some((l) => l.includes("dropped a notification that is not asynchronous inference's"))).toBe(true);
  });
});
