/**
 * Weights versions (issue 26): the time from the trainer's completion (a 50 MB single-file output,
 * a lora.safetensors, left where a SageMaker job leaves it: in the training's job prefix) to the
 * recorded version —
 * - weights path: stage-weights (the checks, the hash, the copy to weights/<sha256>) and the
 *   record step's `weights_version`, on a template that takes its weights as an input;
 * - image path, beside it: stage-weights, the append build+push onto the demo template (as local
 *   mode runs it: in its warm worker thread) and the record step's `version`, on an `any` template.
 * Real local S3/DynamoDB with each function's IAM (the handler fixture), a new training and new
 * bytes per run (a second run of the same bytes would find its weights object in place), the two
 * paths alternated on the same file so load drifts hit both.
 */
import { Upload } from '@aws-sdk/lib-storage';
import { join } from 'node:path';
import { RegistryClient } from '#shared/oci/registry';
import { createDemoTemplate } from '#shared/oci/template';
import { jobKeys } from '#shared/trainers/sagemaker/training-jobs';
import type { TrainingRecord } from '#shared/training';
import { record } from '../lambdas/record/core.ts';
import { stageWeights } from '../lambdas/stage-weights/core.ts';
import { appendWorkers } from '../infra/local/codebuild/append.ts';
import { runLocalBuild } from '../infra/local/codebuild/build-model.ts';
import { startRegistry } from '../infra/local/ecr.ts';
import { newTraining, startFixture, type Fixture } from '../test/helpers/aws-local.ts';
import { incompressible, MiB, seconds } from './lib.ts';

export interface WeightsVersionResults {
  weightsMiB: number;
  /** Trainer's completion → weights version recorded, run by run. */
  weights: number[];
  /** Trainer's completion → image version recorded (stage, build+push, record), run by run. */
  image: number[];
}

const SIZE = 50 * MiB;
const WEIGHTS_INPUT = 'replicate_weights';

export async function measureWeightsVersions(workDir: string, reps: number, log: (l: string) => void): Promise<WeightsVersionResults> {
  const registry = await startRegistry(join(workDir, 'weights-registry'));
  const fx = await startFixture({ as: 'stage-weights', config: { trainers: { gpu: { backend: 'sagemaker', image: `${registry.host}/bench/trainer@sha256:${'0'.repeat(64)}` } } } });
  try {
    const digest = (await createDemoTemplate(new RegistryClient({ baseUrl: registry.url }), 'bench/lora-template', 'latest')).replace(/^sha256:/, '');
    const repository = `${registry.host}/bench/lora-template`;
    const recorder = { ...fx.clientsOf('record'), logs: undefined as never };
    const weights: number[] = [];
    const image: number[] = [];
    for (let i = 0; i < reps; i++) {
      log(`weights: trainer's completion → version, weights and image paths, run ${i + 1}/${reps}`);
      // Local mode keeps a build worker warm; neither path is timed while one loads.
      await appendWorkers.ready();
      const seed = i + 11;
      const lora = await finishedTraining(fx, seed, `bench/weights-${Date.now()}-${i}`, { name: 'bench-lora', repository, digest, weights: 'any', weights_input: WEIGHTS_INPUT });
      weights.push(
        await seconds(async () => {
          const t0 = Date.now();
          const staged = await stageWeights(fx.deps, { registryHost: registry.host }, lora.t.id, lora.url);
          if (staged.kind !== 'weights' || !staged.weights) throw new Error(`stage-weights chose the ${staged.kind} path for a weights-input template`);
          const t1 = Date.now();
          await record(recorder, { action: 'weights_version', training_id: lora.t.id, weights: staged.weights });
          log(`weights: stage (checks, hash, copy) ${(t1 - t0) / 1000} s, record ${(Date.now() - t1) / 1000} s`);
        }),
      );
      const done = await fx.operator.store.getTraining(lora.t.id);
      if (done?.status !== 'succeeded') throw new Error(`the weights version was not recorded: the training is ${done?.status}`);
      const built = await finishedTraining(fx, seed, `bench/image-${Date.now()}-${i}`, { name: 'bench-any', repository, digest, weights: 'any' });
      image.push(await seconds(() => imageVersion(fx, recorder, registry.host, built.t, built.url)));
      log(`weights: weights path ${weights.at(-1)!.toFixed(2)} s, image path ${image.at(-1)!.toFixed(2)} s`);
    }
    return { weightsMiB: SIZE / MiB, weights, image };
  } finally {
    await appendWorkers.stop();
    await fx.stop();
    await registry.stop();
  }
}

/**
 * A training whose SageMaker job just ended: the 50 MB lora.safetensors its job left as the single
 * artifact of its model folder (uploaded as the operator, not timed: only the job's role writes
 * there), and the output URL the job reports.
 */
async function finishedTraining(fx: Fixture, seed: number, model: string, template: TrainingRecord['template']) {
  const t = await newTraining(fx.deps, { trainer: 'gpu', trainer_backend: 'sagemaker', status: 'processing', model, template });
  const key = `${jobKeys(t.id).output}db-bench-${t.id}/output/model/lora.safetensors`;
  await new Upload({ client: fx.operator.s3, params: { Bucket: fx.deps.bucket, Key: key, Body: incompressible(SIZE, seed) } }).done();
  return { t, url: `s3://${fx.deps.bucket}/${key}` };
}

/** The image path: stage-weights, the append build as local mode runs the CodeBuild step, the record. */
async function imageVersion(fx: Fixture, recorder: Parameters<typeof record>[0], registryHost: string, t: TrainingRecord, url: string): Promise<void> {
  const staged = await stageWeights(fx.deps, { registryHost }, t.id, url);
  // The build runs with the operator's keys: its own role is not what is measured.
  const env = { ...staged.build_env, IMAGE_REPOSITORY: `${registryHost}/${t.model}` };
  const built = await runLocalBuild(
    { EnvironmentVariablesOverride: Object.entries(env).map(([Name, Value]) => ({ Name, Value: String(Value) })) },
    { strategy: 'append', registryHost, s3: fx.operator.s3, env: {}, log: () => undefined, limits: { maxEntries: 100, maxBytes: 1024 * MiB } },
    new AbortController().signal,
  );
  const exported = (name: string) => built.Build.ExportedEnvironmentVariables.find((v) => v.Name === name)!.Value;
  await record(recorder, { action: 'version', training_id: t.id, build: { id: 'bench', digest: [exported('IMAGE_DIGEST')], image: [exported('IMAGE_URI')] } });
}
