/** The state machine's bookkeeping steps: model version, failure, webhook given up. */
import { GetLogEventsCommand, type CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import type { BaseDeps } from '#shared/deps';
import { boundedError } from '#shared/run-logs';
import { mustGet } from '#shared/runs';
import { StepError, StepErrors, type RecordEvent, type StagedWeights } from '#shared/steps';
import { backendNamed } from '#shared/trainers/backends';
import type { TrainingRecord } from '#shared/training';
import { weightsVersionId } from '#shared/weights-version';

export interface RecordDeps extends BaseDeps {
  logs: CloudWatchLogsClient;
}

export async function record(d: RecordDeps, ev: RecordEvent): Promise<{ status: string }> {
  const t = await mustGet(d, ev.training_id);
  switch (ev.action) {
    case 'version':
      return recordVersion(d, t, ev.build);
    case 'weights_version':
      return recordWeightsVersion(d, t, ev.weights);
    case 'failure':
      return recordFailure(d, t, ev.error);
    case 'webhook_given_up':
      await d.store.updateTraining(t.id, {
        webhook_outcome: { ...(t.webhook_outcome ?? { attempts: 0, last_status: null }), delivered: false, detail: `gave up: ${describe(ev.error)}` },
      });
      return { status: t.status };
  }
}

async function recordVersion(d: BaseDeps, t: TrainingRecord, build: { id: string; digest: string[]; image: string[]; serving_image?: string[] }) {
  const digest = build.digest[0]!.replace(/^sha256:/, '');
  if (!/^[0-9a-f]{64}$/.test(digest)) throw new StepError(StepErrors.TrainerFailed, `the build exported no valid IMAGE_DIGEST (${digest.slice(0, 80)})`);
  const image = build.image[0] ?? null;
  // The SageMaker variant (contract: lambdas/shared/build-env.ts BUILD_EXPORTS); a version without
  // one is still a version, whose predictions say to re-template it.
  const servingImage = build.serving_image?.[0];
  const now = d.now().toISOString();
  await d.store.putVersion({
    id: digest,
    model: t.model,
    image: image ?? digest,
    notes: t.notes,
    training_id: t.id,
    template: t.template,
    created_at: now,
    ...(servingImage ? { serving_image: servingImage } : {}),
  });
  return succeed(d, t, digest, image, now);
}

/**
 * A weights version: the template and the weights object, no image of its own (contract:
 * lambdas/shared/weights-version.ts). A retry writes the same id, and putVersion keeps the first.
 */
async function recordWeightsVersion(d: BaseDeps, t: TrainingRecord, weights: StagedWeights) {
  const input = t.template.weights_input;
  if (!input) throw new StepError(StepErrors.TrainerFailed, `template ${t.template.name} takes no weights input: its versions are built`);
  const id = weightsVersionId(t.model, t.template.digest, weights.sha256);
  const image = `${t.template.repository}@sha256:${t.template.digest}`;
  const now = d.now().toISOString();
  await d.store.putVersion({
    id,
    model: t.model,
    image,
    notes: t.notes,
    training_id: t.id,
    template: { name: t.template.name, repository: t.template.repository, digest: t.template.digest, weights_input: input },
    created_at: now,
    weights: { key: weights.key, size: weights.size, sha256: weights.sha256, input },
  });
  return succeed(d, t, id, image, now);
}

/** The training's success once its version is recorded (only while pushing and not canceled). */
async function succeed(d: BaseDeps, t: TrainingRecord, version: string, image: string | null, now: string) {
  const updated = await d.store.updateTraining(
    t.id,
    { status: 'succeeded', version, image, completed_at: now, task_token: null },
    { status: ['pushing'], notCancelRequested: true },
  );
  if (updated) await d.emit?.(updated, 'output');
  return { status: updated?.status ?? t.status };
}

async function recordFailure(d: RecordDeps, t: TrainingRecord, error: { Error?: string; Cause?: string }) {
  const canceled = t.cancel_requested || error.Error === StepErrors.TrainingCanceled;
  // The trainer's backend may say more of its own failures (still configured alike or not).
  const trainer = d.config.trainers[t.trainer];
  const own = backendNamed(t.trainer_backend)?.failureMessage?.(error, t.trainer, trainer?.backend === t.trainer_backend ? trainer : undefined);
  const message = canceled ? 'canceled' : (own ?? (await errorMessage(d, error)));
  const updated = await d.store.updateTraining(
    t.id,
    { status: canceled ? 'canceled' : 'failed', error: canceled ? (t.error ?? null) : boundedError(message), completed_at: d.now().toISOString(), task_token: null },
    { status: ['starting', 'processing', 'pushing'] },
  );
  return { status: updated?.status ?? t.status };
}

/** A readable error from a Catch output: Lambda errors, build failures (with their log tail), timeouts. */
export async function errorMessage(d: RecordDeps, error: { Error?: string; Cause?: string }): Promise<string> {
  const name = error.Error ?? 'Error';
  let cause = parse(error.Cause);
  if (cause && typeof cause.errorMessage === 'string') {
    // A task that threw: the build's own cause may sit inside the Lambda-style envelope.
    const inner = parse(cause.errorMessage);
    if (!inner?.Build) return cause.errorMessage;
    cause = inner;
  }
  const build = cause?.Build as { BuildStatus?: string; Phases?: { PhaseType?: string; PhaseStatus?: string }[]; Logs?: { GroupName?: string; StreamName?: string } } | undefined;
  if (build) {
    const phase = build.Phases?.find((p) => p.PhaseStatus && p.PhaseStatus !== 'SUCCEEDED')?.PhaseType ?? 'unknown';
    const tail = typeof cause?.log_tail === 'string' ? cause.log_tail : await logTail(d.logs, build.Logs);
    return `the image build ${String(build.BuildStatus ?? 'FAILED').toLowerCase()} in phase ${phase}${tail ? `:\n${tail}` : ''}`;
  }
  if (name === 'States.Timeout') return 'a step timed out';
  return error.Cause ? `${name}: ${error.Cause}`.slice(0, 4000) : name;
}

async function logTail(client: CloudWatchLogsClient, logs: { GroupName?: string; StreamName?: string } | undefined): Promise<string> {
  if (!logs?.GroupName || !logs.StreamName) return '';
  try {
    const out = await client.send(
      new GetLogEventsCommand({ logGroupName: logs.GroupName, logStreamName: logs.StreamName, limit: 30, startFromHead: false }),
    );
    return (out.events ?? []).map((e) => (e.message ?? '').trimEnd()).join('\n').slice(-4000);
  } catch {
    return '';
  }
}

function parse(s: string | undefined): Record<string, unknown> | null {
  if (!s) return null;
  try {
    const v = JSON.parse(s);
    return v && typeof v === 'object' ? v : null;
  } catch {
    return null;
  }
}

const describe = (e: { Error?: string; Cause?: string }) => `${e.Error ?? 'Error'}${e.Cause ? `: ${e.Cause.slice(0, 300)}` : ''}`;
