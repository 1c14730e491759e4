/**
 * The resolved state machine definition, state by state, and run by the local executor.
 */
import '#infra/local/stepfunctions/polyfill';
import { StateMachine } from 'aws-local-stepfunctions';
import { beforeAll, describe, expect, it } from 'vitest';
import { BUILD_OVERRIDE_NAMES } from '#shared/build-env';
import type { ExecutionInput } from '#shared/execution';
import { type Config, mergeConfig, parseConfig } from '#shared/config';
import type { AslState, SynthesizedDefinition } from '#infra/local/cloudformation/state-machine';
import { synthesizeDefinition } from '#infra/local/cloudformation/synthesize';
import { lambdaEvent } from '#infra/local/lambda/task';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();
function config(overrides: unknown): Config {
  const sections = { limits: {}, egress: {}, retention: {}, webhooks: {}, timeouts: {} };
  return parseConfig(mergeConfig(mergeConfig(cdkJson.context.dreambooth, sections), overrides));
}

const TIMEOUTS = { callback_poll_seconds: 300, callback_heartbeat_seconds: 120, step_seconds: 45, stage_seconds: 600, build_minutes: 30, build_queued_minutes: 20 };
const WEBHOOKS = { retry_interval_seconds: 7, retry_backoff_rate: 3, retry_max_attempts: 5, retry_max_delay_seconds: 3600 };

const SLOT = 'Wait for a free slot on the trainer';
/** The first state: waiting for a slot also refuses a training canceled before it ran. */
const START = SLOT;
const KEEP_WAITING = 'Keep waiting for a free slot';
const FREE = 'Free the trainer slot';
const FREE_AFTER_FAILURE = 'Free the trainer slot after a failure';
const WAIT = 'Start the trainer and wait for its callback';
const ASK = 'Ask the trainer how it is doing';
const FINISHED = 'Has the trainer finished?';
const STAGE = 'Stage the weights in S3';
const KIND = 'Does the template load its weights from an input?';
const FITS = 'Does the archive fit Lambda compute?';
const BUILD = 'Build and push the model image on Lambda compute';
const BUILD_EC2 = 'Build and push the model image on EC2 compute';
const BUILDS = [BUILD, BUILD_EC2];
/** Lambda compute takes staged archives up to this size (configured below). */
const LAMBDA_MAX = 3 * 1024 ** 3;
const VERSION = 'Record the model version';
const WEIGHTS_VERSION = 'Record the weights version';
const WEBHOOK = 'Send the completion webhook';
const WEBHOOK_GIVEN_UP = 'Record the webhook as given up';
const SUCCEEDED = 'Training succeeded';
const FAILURE = 'Record the failure';
const FAILURE_WEBHOOK = 'Send the failure webhook';
const FAILURE_WEBHOOK_GIVEN_UP = 'Record the failure webhook as given up';
const FAILED = 'Training failed';

/** Where each Task's catch-all goes. */
const CATCH_ALL: Record<string, string> = {
  [SLOT]: FREE_AFTER_FAILURE,
  [WAIT]: FREE_AFTER_FAILURE,
  [ASK]: FREE_AFTER_FAILURE,
  [FREE]: FREE_AFTER_FAILURE,
  [FREE_AFTER_FAILURE]: FAILURE,
  [STAGE]: FAILURE,
  [BUILD]: FAILURE,
  [BUILD_EC2]: FAILURE,
  [VERSION]: FAILURE,
  [WEIGHTS_VERSION]: FAILURE,
  [WEBHOOK]: WEBHOOK_GIVEN_UP,
  [WEBHOOK_GIVEN_UP]: SUCCEEDED,
  [FAILURE]: FAILED,
  [FAILURE_WEBHOOK]: FAILURE_WEBHOOK_GIVEN_UP,
  [FAILURE_WEBHOOK_GIVEN_UP]: FAILED,
};

describe('the resolved definition', () => {
  let def: SynthesizedDefinition;
  let states: Record<string, AslState>;
  const tasks = () => Object.entries(states).filter(([, s]) => s.Type === 'Task');

  beforeAll(() => {
    def = synthesizeDefinition(config({ timeouts: TIMEOUTS, webhooks: WEBHOOKS, build: { lambda_compute_max_bytes: LAMBDA_MAX } }));
    states = def.asl.States;
  });

  it('names its states as sentences, exactly these', () => {
    expect([...def.stateNames].sort()).toEqual(
      [...Object.keys(CATCH_ALL), FINISHED, KIND, FITS, KEEP_WAITING, SUCCEEDED, FAILED].sort(),
    );
    expect(def.asl.StartAt).toBe(START);
  });

  it('is JSONPath only: no JSONata, no variables, no CloudFormation left', () => {
    const text = JSON.stringify(def.asl);
    expect(text).not.toMatch(/QueryLanguage|JSONata|"Assign"|\{%/);
    expect(text).not.toMatch(/Fn::|"Ref"/);
  });

  it('chains the happy path in order', () => {
    const path: string[] = [];
    for (let name: string | undefined = START; name; name = states[name]!.Next as string | undefined) path.push(name);
    expect(path).toEqual([START, WAIT, FREE, STAGE, KIND]);
    // A weights version is recorded without a build; any other staged output goes to the build.
    expect(states[KIND]).toEqual({
      Type: 'Choice',
      Choices: [{ Variable: '$.staged.kind', StringEquals: 'weights', Next: WEIGHTS_VERSION }],
      Default: FITS,
    });
    expect(states[WEIGHTS_VERSION]!.Next).toBe(WEBHOOK);
    expect(states[FREE_AFTER_FAILURE]!.Next).toBe(FAILURE);
    for (const build of BUILDS) expect(states[build]!.Next, build).toBe(VERSION);
    path.length = 0;
    for (let name: string | undefined = VERSION; name; name = states[name]!.Next as string | undefined) path.push(name);
    expect(path).toEqual([VERSION, WEBHOOK, SUCCEEDED]);
    expect(states[FAILURE]!.Next).toBe(FAILURE_WEBHOOK);
    expect(states[FAILURE_WEBHOOK]!.Next).toBe(FAILED);
    expect(states[WEBHOOK_GIVEN_UP]!.Next).toBe(SUCCEEDED);
    expect(states[FAILURE_WEBHOOK_GIVEN_UP]!.Next).toBe(FAILED);
  });

  it('gives every Task a timeout, jittered bounded retries and a catch-all', () => {
    for (const [name, state] of tasks()) {
      expect(state.TimeoutSeconds, name).toEqual(expect.any(Number));
      const retries = state.Retry as Array<Record<string, unknown>>;
      expect(retries.length, name).toBeGreaterThan(0);
      for (const r of retries) {
        expect(r, name).toMatchObject({ JitterStrategy: 'FULL', MaxDelaySeconds: expect.any(Number) });
        expect(r.ErrorEquals, name).not.toContain('States.ALL');
      }
      const catches = state.Catch as Array<{ ErrorEquals: string[]; Next: string; ResultPath: string }>;
      // Freeing the slot after a failure keeps the failure's own error for the record.
      const resultPath = name === FREE_AFTER_FAILURE ? '$.release_error' : '$.error';
      expect(catches.at(-1), name).toEqual({ ErrorEquals: ['States.ALL'], Next: CATCH_ALL[name], ResultPath: resultPath });
    }
  });

  it('takes the step timeouts from the configuration', () => {
    expect(states[FREE]!.TimeoutSeconds).toBe(45);
    expect(states[STAGE]!.TimeoutSeconds).toBe(600);
  });

  it('refuses build timeouts outside the 5 to 480 minutes CodeBuild takes, naming the key', () => {
    expect(() => config({ timeouts: { build_minutes: 3 } })).toThrow(/timeouts\.build_minutes: Too small/);
    expect(() => config({ timeouts: { build_queued_minutes: 600 } })).toThrow(/timeouts\.build_queued_minutes: Too big/);
  });

  it('waits for a build as long as CodeBuild may queue it and then run it, and a margin more', () => {
    // build_minutes 30 + build_queued_minutes 20 + 10: CodeBuild times the build out first.
    for (const build of BUILDS) expect(states[build]!.TimeoutSeconds, build).toBe((30 + 20 + 10) * 60);
  });

  it('retries Lambda steps on transient errors and webhooks on their own schedule', () => {
    for (const [name, state] of tasks().filter(([n]) => !BUILDS.includes(n))) {
      expect((state.Retry as Array<{ ErrorEquals: string[] }>)[0]!.ErrorEquals, name).toEqual(
        expect.arrayContaining(['Lambda.ServiceException', 'Lambda.TooManyRequestsException', 'TransientError']),
      );
    }
    for (const name of [WEBHOOK, FAILURE_WEBHOOK]) {
      expect(states[name]!.Retry).toContainEqual({
        ErrorEquals: ['WebhookDeliveryFailed'],
        IntervalSeconds: 7,
        BackoffRate: 3,
        MaxAttempts: 5,
        MaxDelaySeconds: 3600,
        JitterStrategy: 'FULL',
      });
    }
  });

  it('waits for the trainer in a loop: timeout, ask, wait again', () => {
    const wait = states[WAIT]!;
    expect(wait.Resource).toBe('arn:aws:states:::lambda:invoke.waitForTaskToken');
    expect(wait.HeartbeatSeconds).toBe(120);
    expect(wait.TimeoutSeconds).toBe(300);
    expect((wait.Parameters!.Payload as Record<string, unknown>)['task_token.$']).toBe('$$.Task.Token');
    expect((wait.Catch as unknown[])[0]).toEqual({
      ErrorEquals: ['States.Timeout', 'States.HeartbeatTimeout'],
      ResultPath: '$.wait_error',
      Next: ASK,
    });
    expect(states[ASK]!.Next).toBe(FINISHED);
    expect(states[FINISHED]).toEqual({
      Type: 'Choice',
      Choices: [{ Variable: '$.run.status', StringEquals: 'succeeded', Next: FREE }],
      Default: WAIT,
    });
  });

  it('waits for a slot in a loop woken by its task token, and pins the run to the slot\'s server', () => {
    const slot = states[SLOT]!;
    expect(slot.Resource).toBe('arn:aws:states:::lambda:invoke.waitForTaskToken');
    expect(slot.TimeoutSeconds).toBe(300);
    expect(slot.Parameters!.Payload).toEqual({
      action: 'acquire',
      'training_id.$': '$.training_id',
      'task_token.$': '$$.Task.Token',
      'execution.$': '$$.Execution.Id',
    });
    expect(slot.ResultPath).toBe('$.slot');
    expect((slot.Catch as unknown[])[0]).toEqual({ ErrorEquals: ['States.Timeout'], ResultPath: '$.wait_error', Next: KEEP_WAITING });
    expect(states[KEEP_WAITING]).toEqual({ Type: 'Pass', Next: SLOT });
    expect((states[WAIT]!.Parameters!.Payload as Record<string, unknown>)['server.$']).toBe('$.slot.server');
    // A server still answering its last run's webhook is retried briefly, not for an hour.
    expect(states[WAIT]!.Retry).toContainEqual(expect.objectContaining({ ErrorEquals: ['TrainerBusy'], IntervalSeconds: 1, MaxAttempts: 6 }));
  });

  it('builds on Lambda compute when the staged archive fits and no template is copied, on EC2 compute otherwise', () => {
    expect(states[FITS]).toEqual({
      Type: 'Choice',
      Choices: [
        {
          And: [
            { Variable: '$.staged.size', NumericLessThanEquals: LAMBDA_MAX },
            { Variable: '$.staged.copies_template', BooleanEquals: false },
          ],
          Next: BUILD,
        },
      ],
      Default: BUILD_EC2,
    });
  });

  it.each(BUILDS)('never retries a failed build, and trims its result: %s', (name) => {
    const build = states[name]!;
    expect(build.Resource).toBe('arn:aws:states:::codebuild:startBuild.sync');
    expect((build.Retry as Array<{ ErrorEquals: string[] }>).map((r) => r.ErrorEquals)).toEqual([
      ['CodeBuild.AccountLimitExceededException'],
    ]);
    expect(build.ResultSelector).toEqual({
      'id.$': '$.Build.Id',
      'digest.$': "$.Build.ExportedEnvironmentVariables[?(@.Name == 'IMAGE_DIGEST')].Value",
      'image.$': "$.Build.ExportedEnvironmentVariables[?(@.Name == 'IMAGE_URI')].Value",
      'serving_image.$': "$.Build.ExportedEnvironmentVariables[?(@.Name == 'IMAGE_SERVING_URI')].Value",
    });
    expect(build.ResultPath).toBe('$.build');
  });

  it.each(BUILDS)("passes the build exactly the contract's overrides, from stage-weights' result: %s", (name) => {
    const overrides = states[name]!.Parameters!.EnvironmentVariablesOverride as Array<{ Name: string; 'Value.$': string }>;
    expect(overrides.map((o) => o.Name)).toEqual(BUILD_OVERRIDE_NAMES);
    for (const o of overrides) expect(o['Value.$']).toBe(`$.staged.build_env.${o.Name}`);
  });

  it('maps each Task to the handler local mode runs', () => {
    expect(def.taskHandlers).toEqual({
      [SLOT]: { kind: 'lambda', handler: 'trainer-queue', integration: 'waitForTaskToken' },
      [FREE]: { kind: 'lambda', handler: 'trainer-queue', integration: 'direct' },
      [FREE_AFTER_FAILURE]: { kind: 'lambda', handler: 'trainer-queue', integration: 'direct' },
      [WAIT]: { kind: 'lambda', handler: 'start-trainer', integration: 'waitForTaskToken' },
      [ASK]: { kind: 'lambda', handler: 'check-trainer', integration: 'direct' },
      [STAGE]: { kind: 'lambda', handler: 'stage-weights', integration: 'direct' },
      [BUILD]: { kind: 'codebuild' },
      [BUILD_EC2]: { kind: 'codebuild' },
      [VERSION]: { kind: 'lambda', handler: 'record', integration: 'direct' },
      [WEIGHTS_VERSION]: { kind: 'lambda', handler: 'record', integration: 'direct' },
      [WEBHOOK]: { kind: 'lambda', handler: 'notify', integration: 'direct' },
      [WEBHOOK_GIVEN_UP]: { kind: 'lambda', handler: 'record', integration: 'direct' },
      [FAILURE]: { kind: 'lambda', handler: 'record', integration: 'direct' },
      [FAILURE_WEBHOOK]: { kind: 'lambda', handler: 'notify', integration: 'direct' },
      [FAILURE_WEBHOOK_GIVEN_UP]: { kind: 'lambda', handler: 'record', integration: 'direct' },
    });
  });
});

describe('the definition run by the local executor', () => {
  const TRAINING = 'abcdefghij0123456789';
  const EXECUTION = `arn:aws:states:us-east-1:000000000000:execution:m:${TRAINING}`;
  const granted = () => ({ trainer: 'cog', slot: 1, server: 'http://cog-b:5000', granted_at: '2030-01-01T00:00:00.000Z' });
  const DIGEST = 'a'.repeat(64);

  /** Runs the definition with recording stand-ins for the handlers. */
  async function run(def: SynthesizedDefinition, behave: Partial<Record<string, (event: any) => unknown>>, input: object = { training_id: TRAINING }) {
    const calls: Array<{ state: string; event: any }> = [];
    const handlers = Object.fromEntries(
      Object.entries(def.taskHandlers).map(([state, target]) => [
        state,
        async (input: unknown) => {
          const event = lambdaEvent(target, input);
          calls.push({ state, event });
          const act = behave[state];
          return (act ? await act(event) : null) as never;
        },
      ]),
    );
    const machine = new StateMachine(def.asl as never, { validationOptions: { checkArn: false } });
    const execution = machine.run(input as never, {
      overrides: { taskResourceLocalHandlers: handlers, retryIntervalOverrides: Object.fromEntries(def.stateNames.map((n) => [n, 0])) },
      context: { Task: { Token: 'token-1' }, Execution: { Id: EXECUTION } },
    });
    const outcome = await execution.result.then(
      (output) => ({ ok: true as const, output }),
      (error: Error) => ({ ok: false as const, error }),
    );
    return { calls, outcome, states: calls.map((c) => c.state) };
  }

  const trainerDone = () => ({ status: 'succeeded', output_url: 'https://example.com/output.zip', predict_time: 1 });
  const staged = () => ({
    bucket: 'b',
    key: 'staged/x.zip',
    size: 1,
    entries: 1,
    copies_template: false,
    format: 'tar',
    kind: 'image',
    build_env: { TRAINING_ID: TRAINING, WEIGHTS_S3_URI: 's3://b/staged/x.tar', WEIGHTS_FORMAT: 'tar', TEMPLATE_IMAGE: 't@sha256:0', IMAGE_REPOSITORY: 'r', IMAGE_TAG: 'v', NOTES_S3_URI: 's3://b/staged/x/build/notes.txt' },
  });
  const built = () => ({
    Build: {
      Id: 'build:1',
      ExportedEnvironmentVariables: [
        { Name: 'IMAGE_DIGEST', Value: DIGEST },
        { Name: 'IMAGE_URI', Value: `r@sha256:${DIGEST}` },
        { Name: 'IMAGE_SERVING_URI', Value: `r@sha256:${'e'.repeat(64)}` },
      ],
    },
  });

  it('succeeds through every step, handing each its documented payload', async () => {
    const def = synthesizeDefinition(config({}));
    const { outcome, calls, states } = await run(def, {
      [SLOT]: granted,
      [WAIT]: trainerDone,
      [STAGE]: staged,
      [BUILD]: built,
    });
    expect(outcome.ok).toBe(true);
    expect(states).toEqual([START, WAIT, FREE, STAGE, BUILD, VERSION, WEBHOOK]);
    const event = (state: string) => calls.find((c) => c.state === state)!.event;
    expect(event(SLOT)).toEqual({ action: 'acquire', training_id: TRAINING, task_token: 'token-1', execution: EXECUTION });
    expect(event(WAIT)).toEqual({ training_id: TRAINING, task_token: 'token-1', server: 'http://cog-b:5000', granted_at: '2030-01-01T00:00:00.000Z' });
    expect(event(FREE)).toEqual({ action: 'release', training_id: TRAINING });
    expect(event(STAGE)).toEqual({ training_id: TRAINING, output_url: 'https://example.com/output.zip' });
    expect(event(BUILD).EnvironmentVariablesOverride).toContainEqual({ Name: 'NOTES_S3_URI', Type: 'PLAINTEXT', Value: 's3://b/staged/x/build/notes.txt' });
    expect(event(BUILD).EnvironmentVariablesOverride).toContainEqual({ Name: 'WEIGHTS_FORMAT', Type: 'PLAINTEXT', Value: 'tar' });
    expect(event(VERSION)).toEqual({
      action: 'version',
      training_id: TRAINING,
      build: { id: 'build:1', digest: [DIGEST], image: [`r@sha256:${DIGEST}`], serving_image: [`r@sha256:${'e'.repeat(64)}`] },
    });
    expect(event(WEBHOOK)).toEqual({ training_id: TRAINING, event: 'completed' });
  });

  it('records a weights version straight after staging: no build', async () => {
    const weights = { key: `weights/${'b'.repeat(64)}`, size: 1, sha256: 'b'.repeat(64) };
    const def = synthesizeDefinition(config({}));
    const { outcome, calls, states } = await run(def, {
      [SLOT]: granted,
      [WAIT]: trainerDone,
      [STAGE]: () => ({ ...staged(), kind: 'weights', weights }),
      [BUILD]: built,
    });
    expect(outcome.ok).toBe(true);
    expect(states).toEqual([START, WAIT, FREE, STAGE, WEIGHTS_VERSION, WEBHOOK]);
    expect(calls.find((c) => c.state === WEIGHTS_VERSION)!.event).toEqual({ action: 'weights_version', training_id: TRAINING, weights });
  });

  it("keeps the input's trainer name, and the trainer's result under a name of its own", async () => {
    const input: ExecutionInput = { training_id: TRAINING, model: 'alice/dog', trainer: 'cog', template: 'vanilla' };
    const { outcome } = await run(synthesizeDefinition(config({})), { [SLOT]: granted, [WAIT]: trainerDone, [STAGE]: staged, [BUILD]: built }, input);
    expect(outcome.ok && outcome.output).toMatchObject({ ...input, run: trainerDone() });
  });

  it('builds on EC2 compute when the template must be copied from another registry', async () => {
    const { outcome, states } = await run(synthesizeDefinition(config({})), {
      [SLOT]: granted,
      [WAIT]: trainerDone,
      [STAGE]: () => ({ ...staged(), copies_template: true }),
      [BUILD_EC2]: built,
    });
    expect(outcome.ok).toBe(true);
    expect(states).toEqual([START, WAIT, FREE, STAGE, BUILD_EC2, VERSION, WEBHOOK]);
  });

  it('builds an archive beyond the Lambda compute limit on EC2 compute', async () => {
    const def = synthesizeDefinition(config({ build: { lambda_compute_max_bytes: 100 } }));
    const { outcome, states } = await run(def, {
      [SLOT]: granted,
      [WAIT]: trainerDone,
      [STAGE]: () => ({ ...staged(), size: 101 }),
      [BUILD_EC2]: built,
    });
    expect(outcome.ok).toBe(true);
    expect(states).toEqual([START, WAIT, FREE, STAGE, BUILD_EC2, VERSION, WEBHOOK]);
  });

  it('asks the trainer after a timed-out wait and waits again while it runs', async () => {
    // Two-second waits: each wait below never completes, so the executor's timeout ends it.
    const def = synthesizeDefinition(config({ timeouts: { callback_poll_seconds: 2, callback_heartbeat_seconds: 1, training_seconds: 600 } }));
    let asked = 0;
    const { outcome, states } = await run(def, {
      [SLOT]: granted,
      [WAIT]: () => new Promise(() => undefined),
      [ASK]: () => (++asked < 2 ? { status: 'running' } : trainerDone()),
      [STAGE]: staged,
      [BUILD]: built,
    });
    expect(outcome.ok).toBe(true);
    expect(states.slice(0, 7)).toEqual([START, WAIT, ASK, WAIT, ASK, FREE, STAGE]);
  });

  it('keeps waiting for a slot after each poll, then trains', async () => {
    const def = synthesizeDefinition(config({ timeouts: { queue_poll_seconds: 1, queue_seconds: 600 } }));
    let polls = 0;
    const { outcome, states } = await run(def, {
      [SLOT]: () => (++polls < 3 ? new Promise(() => undefined) : granted()),
      [WAIT]: trainerDone,
      [STAGE]: staged,
      [BUILD]: built,
    });
    expect(outcome.ok).toBe(true);
    expect(states.slice(0, 4)).toEqual([SLOT, SLOT, SLOT, WAIT]);
  });

  it('frees the slot when the trainer fails, and records the trainer\'s error', async () => {
    const def = synthesizeDefinition(config({}));
    const trainerFailed = Object.assign(new Error('CUDA out of memory'), { name: 'TrainerFailed' });
    const { outcome, calls, states } = await run(def, {
      [SLOT]: granted,
      [WAIT]: () => {
        throw trainerFailed;
      },
      [FREE_AFTER_FAILURE]: () => {
        throw Object.assign(new Error('table unavailable'), { name: 'Error' });
      },
    });
    expect(outcome.ok).toBe(false);
    expect(states).toEqual([START, WAIT, FREE_AFTER_FAILURE, FAILURE, FAILURE_WEBHOOK]);
    expect(calls.find((c) => c.state === FAILURE)!.event.error).toMatchObject({ Error: 'TrainerFailed' });
  });

  it('records the failure, tells the client and fails when a step fails', async () => {
    const def = synthesizeDefinition(config({}));
    const badArchive = Object.assign(new Error('the archive holds ../etc/passwd'), { name: 'BadArchive' });
    const { outcome, calls, states } = await run(def, {
      [SLOT]: granted,
      [WAIT]: trainerDone,
      [STAGE]: () => {
        throw badArchive;
      },
    });
    expect(outcome.ok).toBe(false);
    // The slot was freed when the trainer finished: a later failure goes straight to the record.
    expect(states).toEqual([START, WAIT, FREE, STAGE, FAILURE, FAILURE_WEBHOOK]);
    expect(calls.find((c) => c.state === FAILURE)!.event).toMatchObject({
      action: 'failure',
      training_id: TRAINING,
      error: { Error: 'BadArchive' },
    });
  });
});

describe('the docker build strategy', () => {
  it('has one privileged-project build step and no choice', () => {
    const def = synthesizeDefinition(config({ build: { strategy: 'docker' } }));
    const single = 'Build and push the model image';
    expect(def.stateNames).toContain(single);
    expect(def.stateNames).not.toContain(FITS);
    expect(def.stateNames.filter((n) => n.startsWith('Build and push'))).toEqual([single]);
    expect(def.asl.States[STAGE]!.Next).toBe(KIND);
    expect(def.asl.States[KIND]!.Default).toBe(single);
    expect(def.asl.States[single]!.Next).toBe(VERSION);
    expect(def.taskHandlers[single]).toEqual({ kind: 'codebuild' });
  });
});
