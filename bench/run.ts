/**
 * `npm run bench` (not part of `npm test`): build, staging, API and bundle measurements on this
 * machine, in one run on the same data; prints a table and writes bench/results.json.
 *   --reps N    alternated repetitions of each timed step (default 5); a ratio row reports the
 *               min, median and max of its runs' ratios, and its target holds on the median
 *   --only a,b  a subset of: build, stage, api, bundles, sagemaker, queue, predict, weights, local
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import '../infra/local/stepfunctions/polyfill.ts';
import { REPO_ROOT } from '../infra/constructs/function.ts';
import { measureApi, type ApiResults } from './api.ts';
import { measureBuilds, type BuildResults } from './build.ts';
import { measureBundles, type BundleRow } from './bundles.ts';
import { startDocker } from './docker.ts';
import { measureFirstPredictions, type FirstPredictionResults } from './first-prediction.ts';
import { fmt, median, ratioSpread, spreadOf, type Spread } from './lib.ts';
import { measureLocal, type LocalResults } from './local.ts';
import { measurePredictions, type PredictResults } from './predict.ts';
import { measureQueue, type QueueResults } from './queue.ts';
import { measureSageMakerPostTraining, type SageMakerResults } from './sagemaker.ts';
import { measureStaging, type StageResults } from './stage.ts';
import { measureWeightsVersions, type WeightsVersionResults } from './weights.ts';

const PARTS = ['build', 'stage', 'api', 'bundles', 'sagemaker', 'queue', 'predict', 'weights', 'local'] as const;
type Part = (typeof PARTS)[number];

/** The issue's targets: `max` means the value must not exceed it, `min` not fall below. */
const TARGETS = {
  append_over_floor: { max: 1.3 },
  docker_over_append: { min: 5 },
  stage_over_upload: { max: 1.2 },
  stage_peak_rss_mb: { max: 256 },
  bundle_max_kb: { max: 1536 },
  import_max_ms: { max: 150 },
  sagemaker_post_training_over_floor: { max: 1.2 },
  queue_all_succeeded: { min: 1 },
  queue_utilisation: { min: 0.9 },
  queue_fifo_inversions: { max: 0 },
  queue_other_owner_wait_runs: { max: 2 },
  predict_overhead_s: { max: 0.5 },
  predict_burst_utilisation: { min: 0.9 },
  weights_version_seconds: { max: 1 },
  first_prediction_after_training_minus_predict_s: { max: 1 },
  local_start_s: { max: 5 },
  local_resume_s: { max: 10 },
  local_idle_rss_mb: { max: 500 },
} as const;

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { reps: { type: 'string', default: '5' }, only: { type: 'string', default: PARTS.join(',') } } });
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1 || reps > 20) throw new Error('--reps must be 1 to 20');
  const only = new Set(values.only!.split(',') as Part[]);
  const work = await mkdtemp(join(tmpdir(), 'dreambooth-bench-'));
  const docker = only.has('build') ? await startDocker(join(work, 'dockerd'), log) : null;
  if (only.has('build') && !docker) log('no docker engine reachable: the docker build is left out');
  const started = Date.now();
  try {
    const bundles = only.has('bundles') ? await measureBundles(join(REPO_ROOT, 'bench', '.out', 'bundles')) : null;
    const build = only.has('build') ? await measureBuilds(work, reps, docker, log) : null;
    const stage = only.has('stage') ? await measureStaging(work, reps, log) : null;
    const api = only.has('api') ? await measureApi(log) : null;
    const sagemaker = only.has('sagemaker') ? await measureSageMakerPostTraining(work, reps, log) : null;
    const queue = only.has('queue') ? await measureQueue(log) : null;
    const predict = only.has('predict') ? await measurePredictions(log) : null;
    const weights = only.has('weights') ? { versions: await measureWeightsVersions(work, reps, log), first: await measureFirstPredictions(reps, log) } : null;
    const local = only.has('local') ? await measureLocal(log) : null;
    const results = summarize(reps, { build, stage, api, bundles, sagemaker, queue, predict, weights, local }, (Date.now() - started) / 1000);
    await writeFile(join(REPO_ROOT, 'bench', 'results.json'), JSON.stringify(results, null, 2) + '\n');
    print(results, bundles);
  } finally {
    await docker?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/** What one run measured; a part left out by `--only` is null. */
interface Measured {
  build: BuildResults | null;
  stage: StageResults | null;
  api: ApiResults | null;
  bundles: BundleRow[] | null;
  sagemaker: SageMakerResults | null;
  queue: QueueResults | null;
  predict: PredictResults | null;
  weights: { versions: WeightsVersionResults; first: FirstPredictionResults } | null;
  local: LocalResults | null;
}

/** The median, NaN for a part not run. */
const medianOf = (xs: number[] | null | undefined) => (xs?.length ? median(xs) : NaN);

/** bench/results.json: the headline values, each part's details and runs, the targets. */
function summarize(reps: number, measured: Measured, seconds: number) {
  const values = headline(measured);
  return {
    when: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version },
    reps,
    seconds: round(seconds),
    ...(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, round(v)])) as Record<keyof typeof values, number | null>),
    ...details(measured),
    targets: targetsMet(values, spreads(measured)),
  };
}

/** The rows measured run by run (alternated): each run's ratio, and their spread. */
function spreads({ build, stage, sagemaker, weights }: Measured): Record<string, Spread> {
  return {
    weights_version_seconds: spreadOf(weights?.versions.weights),
    first_prediction_after_training_minus_predict_s: spreadOf(overPredict(weights?.first)),
    append_over_floor: ratioSpread(build?.append, build?.floor),
    docker_over_append: ratioSpread(build?.docker, build?.append),
    stage_over_upload: ratioSpread(stage?.stage.map((r) => r.seconds), stage?.plain.map((r) => r.seconds)),
    sagemaker_post_training_over_floor: ratioSpread(sagemaker?.post, sagemaker?.floor),
  };
}

/** Each run's first prediction after its version, less that prediction's own predict_time. */
const overPredict = (f: FirstPredictionResults | null | undefined) => f?.first.map((s, i) => s - f.predict[i]!);

/** The numbers the targets and the docs' table read; a ratio row's is its median. */
function headline(measured: Measured) {
  const { stage, api, bundles, queue, predict, weights, local } = measured;
  const ratio = spreads(measured);
  const script = bundles?.find((b) => b.kind === 'script');
  const lazy = bundles?.find((b) => b.kind === 'lazy');
  const lambdas = bundles?.filter((b) => b.kind === 'lambda');
  return {
    append_over_floor: ratio.append_over_floor!.median,
    docker_over_append: ratio.docker_over_append!.median,
    stage_over_upload: ratio.stage_over_upload!.median,
    stage_peak_rss_mb: Math.max(...(stage?.stage.map((r) => r.peak_rss_mb) ?? [NaN])),
    api_get_p50_ms: api?.get.p50 ?? NaN,
    api_get_p99_ms: api?.get.p99 ?? NaN,
    api_post_p50_ms: api?.post.p50 ?? NaN,
    api_post_p99_ms: api?.post.p99 ?? NaN,
    // The targets are the Lambdas'; the CodeBuild build script is reported on its own.
    bundle_max_kb: Math.max(...(lambdas?.map((b) => b.kb) ?? [NaN])),
    import_max_ms: Math.max(...(lambdas?.map((b) => b.importMs) ?? [NaN])),
    import_floor_ms: bundles?.find((b) => b.kind === 'floor')?.importMs ?? NaN,
    build_script_kb: script?.kb ?? NaN,
    build_script_import_ms: script?.importMs ?? NaN,
    // What the api's and notify's first S3 call loads (lambdas/shared/s3-sdk.ts).
    s3_sdk_kb: lazy?.kb ?? NaN,
    s3_sdk_import_ms: lazy?.importMs ?? NaN,
    // Against its own floor runs, alternated with it on the same file.
    sagemaker_post_training_over_floor: ratio.sagemaker_post_training_over_floor!.median,
    queue_all_succeeded: queue ? Number(queue.succeeded === queue.trainings) : NaN,
    queue_utilisation: queue?.utilisation ?? NaN,
    queue_fifo_inversions: queue?.fifo_inversions ?? NaN,
    queue_other_owner_wait_runs: queue?.other_owner_wait_runs ?? NaN,
    predict_overhead_s: predict?.overhead_s ?? NaN,
    predict_burst_utilisation: predict?.utilisation ?? NaN,
    // Trainer's completion → version: the weights path (the target) and the image path beside it.
    weights_version_seconds: ratio.weights_version_seconds!.median,
    image_version_seconds: medianOf(weights?.versions.image),
    first_prediction_after_training_s: medianOf(weights?.first.first),
    first_prediction_predict_time_s: medianOf(weights?.first.predict),
    first_prediction_after_training_minus_predict_s: ratio.first_prediction_after_training_minus_predict_s!.median,
    local_start_s: local?.start_s ?? NaN,
    local_resume_s: local?.resume_s ?? NaN,
    local_idle_rss_mb: local?.idle_rss_mb ?? NaN,
  };
}

/** Each target with its value, and whether it is met (null when its part was not run). */
function targetsMet(values: ReturnType<typeof headline>, spread: Record<string, Spread>) {
  return Object.fromEntries(
    Object.entries(TARGETS).map(([k, t]) => {
      const v = values[k as keyof typeof values];
      const met = Number.isFinite(v) ? ('max' in t ? v <= t.max : v >= t.min) : null;
      const s = spread[k];
      return [k, { ...t, value: round(v), met, ...(s && { runs_min: round(s.min), runs_max: round(s.max) }) }];
    }),
  );
}

/** Each part's medians and its runs. */
function details({ build, stage, api, bundles, sagemaker, queue, predict, weights, local }: Measured) {
  return {
    build: build && {
      template_mib: build.templateMiB,
      weights_mib: build.weightsMiB,
      floor_s: round(medianOf(build.floor)),
      append_s: round(medianOf(build.append)),
      docker_s: round(medianOf(build.docker)),
      runs: { floor: build.floor.map(round), append: build.append.map(round), docker: build.docker?.map(round) ?? null },
    },
    stage: stage && {
      bytes: stage.bytes,
      stage_s: round(medianOf(stage.stage.map((r) => r.seconds))),
      plain_upload_s: round(medianOf(stage.plain.map((r) => r.seconds))),
      plain_peak_rss_mb: round(Math.max(...stage.plain.map((r) => r.peak_rss_mb))),
      runs: { stage: stage.stage, plain: stage.plain },
    },
    api,
    sagemaker: sagemaker && {
      weights_mib: sagemaker.weightsMiB,
      floor_s: round(medianOf(sagemaker.floor)),
      post_training_s: round(medianOf(sagemaker.post)),
      runs: { floor: sagemaker.floor.map(round), post_training: sagemaker.post.map(round) },
    },
    queue: queue && { ...queue, run_s: round(queue.run_s), makespan_s: round(queue.makespan_s) },
    predict: predict && { ...predict, run_s: round(predict.run_s), overhead_s: round(predict.overhead_s), overheads: predict.overheads.map(round), makespan_s: round(predict.makespan_s) },
    weights: weights && {
      weights_mib: weights.versions.weightsMiB,
      weights_version_s: round(medianOf(weights.versions.weights)),
      image_version_s: round(medianOf(weights.versions.image)),
      first_prediction_s: round(medianOf(weights.first.first)),
      predict_time_s: round(medianOf(weights.first.predict)),
      steps: weights.first.steps,
      runs: {
        weights_version: weights.versions.weights.map(round),
        image_version: weights.versions.image.map(round),
        first_prediction: weights.first.first.map(round),
        predict_time: weights.first.predict.map(round),
        posted_after: weights.first.posted_after.map(round),
      },
    },
    local,
    bundles: bundles?.map((b) => ({ name: b.name, kb: round(b.kb), import_ms: round(b.importMs) })) ?? null,
  };
}

const round = (v: number) => (Number.isFinite(v) ? Math.round(v * 100) / 100 : null);

function print(r: ReturnType<typeof summarize>, bundles: BundleRow[] | null): void {
  const rows: [string, string][] = [];
  if (r.build) {
    rows.push([`floor: ${r.build.weights_mib} MiB weights blob → registry`, `${fmt(r.build.floor_s ?? NaN)} s`]);
    rows.push([`append build+push onto a ${r.build.template_mib} MiB template`, `${fmt(r.build.append_s ?? NaN)} s`]);
    rows.push(['docker build+push (unzip, build, push)', r.build.docker_s === null ? 'no engine' : `${fmt(r.build.docker_s)} s`]);
  }
  if (r.stage) {
    rows.push(['staging 1 GiB: stage-weights', `${fmt(r.stage.stage_s ?? NaN)} s, peak RSS ${fmt(r.stage_peak_rss_mb ?? NaN, 0)} MB`]);
    rows.push(['staging 1 GiB: plain multipart upload', `${fmt(r.stage.plain_upload_s ?? NaN)} s, peak RSS ${fmt(r.stage.plain_peak_rss_mb ?? NaN, 0)} MB`]);
  }
  if (r.api) {
    rows.push(['API GET /v1/trainings/{id}, 50 connections', `p50 ${r.api.get.p50} ms, p99 ${r.api.get.p99} ms (${r.api.get.requests} requests)`]);
    rows.push(['API POST /v1/trainings, 50 connections', `p50 ${r.api.post.p50} ms, p99 ${r.api.post.p99} ms (${r.api.post.requests} requests)`]);
  }
  if (r.sagemaker) {
    rows.push([`sagemaker: floor, ${r.sagemaker.weights_mib} MiB weights blob → registry`, `${fmt(r.sagemaker.floor_s ?? NaN)} s`]);
    rows.push(['sagemaker: job end → version (stage, build, push, record)', `${fmt(r.sagemaker.post_training_s ?? NaN)} s`]);
  }
  if (r.queue) {
    const q = r.queue;
    rows.push([`queue: ${q.trainings} at once, demo trainer, concurrency 2`, `${q.succeeded} succeeded, makespan ${fmt(q.makespan_s ?? NaN)} s, one run alone ${fmt(q.run_s ?? NaN)} s, ${q.fifo_ties} pairs created in the same ms`]);
  }
  if (r.predict) {
    const p = r.predict;
    rows.push([`predict: ${p.sequential} sequential, warm endpoint`, `overhead median ${fmt(p.overhead_s ?? NaN)} s over a ${fmt(p.run_s ?? NaN)} s model`]);
    rows.push([`predict: ${p.burst} at once, ${p.instances} instances`, `${p.burst_succeeded} succeeded, makespan ${fmt(p.makespan_s ?? NaN)} s`]);
  }
  if (r.weights) {
    const w = r.weights;
    rows.push([`weights: ${w.weights_mib} MB file, trainer done → weights version`, `${fmt(w.weights_version_s ?? NaN)} s (stage, hash, copy, record)`]);
    rows.push([`weights: same file, trainer done → image version`, `${fmt(w.image_version_s ?? NaN)} s (stage, append build+push, record)`]);
    rows.push(['weights: version recorded → first prediction, warm', `${fmt(w.first_prediction_s ?? NaN)} s over a ${fmt(w.predict_time_s ?? NaN)} s model (${w.steps} steps)`]);
  }
  if (r.local) rows.push(['local: second start; with executions to resume', `${fmt(r.local.start_s)} s; ${fmt(r.local.resume_s)} s resuming ${r.local.resumed}`]);
  for (const b of bundles ?? []) rows.push([`bundle ${b.name}`, `${fmt(b.kb, 0)} KB, cold import ${fmt(b.importMs, 0)} ms`]);
  if (bundles) rows.push(['(cold imports: medians of 11, round-robin)', '']);
  for (const [k, t] of Object.entries(r.targets)) {
    const bound = 'max' in t ? `≤ ${t.max}` : `≥ ${(t as { min: number }).min}`;
    const spread = 'runs_min' in t && t.runs_min !== null ? ` (runs ${t.runs_min}–${t.runs_max})` : '';
    rows.push([`${k} (target ${bound})`, `${t.value ?? 'n/a'}${spread} ${t.met === null ? '' : t.met ? 'met' : 'NOT met'}`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n\nmedians of ${r.reps} runs; ${r.seconds} s in all; bench/results.json written\n`);
}

main().catch((e: Error) => {
  log(`failed: ${e.stack ?? e.message}`);
  process.exitCode = 1;
});
