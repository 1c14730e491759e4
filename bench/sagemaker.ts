/**
 * After a SageMaker job: the time from the job's end (its output.zip uploaded, uncompressed, to
 * the training's job prefix) to the recorded version — stage-weights (a server-side copy and the
 * archive checks by ranged reads), the append build+push onto a 1 GiB template (as local mode runs it:
 * in its warm worker thread), the version
 * record — against the floor (the same weights file uploaded once as a blob, from a worker thread
 * of its own too). Both into local
 * servers (s3rver, the local registry), alternated so load drifts hit both.
 */
import { createReadStream } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { Upload } from '@aws-sdk/lib-storage';
import { RegistryClient } from '#shared/oci/registry';
import { createLargeTemplate } from '#shared/oci/template';
import { jobKeys } from '#shared/trainers/sagemaker/training-jobs';
import { record } from '../lambdas/record/core.ts';
import { stageWeights } from '../lambdas/stage-weights/core.ts';
import { bundleBuildImage } from '../infra/constructs/build.ts';
import { appendWorkers } from '../infra/local/codebuild/append.ts';
import { runLocalBuild } from '../infra/local/codebuild/build-model.ts';
import { startRegistry } from '../infra/local/ecr.ts';
import { newTraining, startFixture } from '../test/helpers/aws-local.ts';
import { MiB, seconds, writeWeightsZip } from './lib.ts';

export interface SageMakerResults {
  weightsMiB: number;
  floor: number[];
  post: number[];
}

export async function measureSageMakerPostTraining(workDir: string, reps: number, log: (l: string) => void): Promise<SageMakerResults> {
  let floorWorker: Awaited<ReturnType<typeof startFloorWorker>> | null = null;
  const registry = await startRegistry(join(workDir, 'sagemaker-registry'));
  const fx = await startFixture({ as: 'stage-weights', config: { trainers: { gpu: { backend: 'sagemaker', image: `${registry.host}/bench/trainer@sha256:${'0'.repeat(64)}` } } } });
  try {
    const client = new RegistryClient({ baseUrl: registry.url });
    log('sagemaker: pushing a 1 GiB template to the local registry');
    const template = await createLargeTemplate(client, 'bench/template', 'latest', 1024 * MiB);
    const zip = join(workDir, 'sagemaker-weights.zip');
    const files = { 'unet/diffusion_pytorch_model.safetensors': 400 * MiB, 'text_encoder/model.safetensors': 112 * MiB };
    await writeWeightsZip(zip, files);
    floorWorker = await startFloorWorker(workDir);
    const floor: number[] = [];
    const post: number[] = [];
    for (let i = 0; i < reps; i++) {
      log(`sagemaker: floor and job end → version, run ${i + 1}/${reps}`);
      // Local mode keeps a build worker warm; the floor is not timed while one loads.
      await appendWorkers.ready();
      floor.push(await floorWorker.upload(registry.url, `bench/floor-${i}`, zip));
      const t = await newTraining(fx.deps, {
        trainer: 'gpu',
        trainer_backend: 'sagemaker',
        status: 'processing',
        model: `bench/sagemaker-${Date.now()}-${i}`,
        template: { name: 'bench', repository: `${registry.host}/bench/template`, digest: template.replace(/^sha256:/, '') },
      });
      // What the job left: the runner's archive under the training's job prefix (not timed; as
      // the operator: local IAM is enforced, and only the job's role writes there). The build and
      // the record run with the operator's keys too: their own roles are not what is measured.
      const model = `${jobKeys(t.id).output}db-bench-${t.id}/output/model/`;
      await new Upload({ client: fx.operator.s3, params: { Bucket: fx.deps.bucket, Key: `${model}output.zip`, Body: createReadStream(zip) } }).done();
      post.push(
        await seconds(async () => {
          const t0 = Date.now();
          const staged = await stageWeights(fx.deps, { registryHost: registry.host }, t.id, `s3://${fx.deps.bucket}/${model}`);
          const t1 = Date.now();
          // As local mode runs the CodeBuild step: the append build in its warm worker thread.
          const env = { ...staged.build_env, IMAGE_REPOSITORY: `${registry.host}/${t.model}` };
          const built = await runLocalBuild(
            { EnvironmentVariablesOverride: Object.entries(env).map(([Name, Value]) => ({ Name, Value: String(Value) })) },
            { strategy: 'append', registryHost: registry.host, s3: fx.operator.s3, env: {}, log: () => undefined, limits: { maxEntries: 100, maxBytes: 2 * 1024 * MiB } },
            new AbortController().signal,
          );
          const exported = (name: string) => built.Build.ExportedEnvironmentVariables.find((v) => v.Name === name)!.Value;
          const t2 = Date.now();
          await record({ ...fx.operator, logs: undefined as never }, { action: 'version', training_id: t.id, build: { id: 'bench', digest: [exported('IMAGE_DIGEST')], image: [exported('IMAGE_URI')] } });
          log(`sagemaker: stage ${(t1 - t0) / 1000} s, build and push ${(t2 - t1) / 1000} s, record ${(Date.now() - t2) / 1000} s`);
        }),
      );
    }
    return { weightsMiB: Object.values(files).reduce((a, b) => a + b, 0) / MiB, floor, post };
  } finally {
    await floorWorker?.stop();
    await appendWorkers.stop();
    await fx.stop();
    await registry.stop();
  }
}

/** The floor's upload in a worker thread of its own (bench/floor-worker.ts), as the build runs in one. */
async function startFloorWorker(workDir: string) {
  const worker = new Worker(bundleBuildImage(workDir, 'bench/floor-worker.ts', 'floor-worker.mjs'));
  const next = () => new Promise<{ ready?: boolean; seconds?: number; error?: string }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await next();
  return {
    async upload(registryUrl: string, repo: string, file: string): Promise<number> {
      const answer = next();
      worker.postMessage({ registryUrl, repo, file });
      const { seconds, error } = await answer;
      if (error) throw new Error(`floor upload: ${error}`);
      return seconds!;
    },
    stop: () => worker.terminate(),
  };
}
