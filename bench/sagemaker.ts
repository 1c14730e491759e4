/**
 * After a SageMaker job: the time from the job's end (its output.zip uploaded, uncompressed, to
 * the training's job prefix) to the recorded version — stage-weights (a server-side copy and the
 * archive checks by ranged reads), the append build+push onto a 1 GiB template, the version
 * record — against the floor (the same weights file uploaded once as a blob). Both into local
 * servers (s3rver, the local registry), alternated so load drifts hit both.
 */
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { Upload } from '@aws-sdk/lib-storage';
import { RegistryClient } from '#shared/oci/registry';
import { createLargeTemplate } from '#shared/oci/template';
import { jobKeys } from '#shared/sagemaker';
import { buildImage } from '../lambdas/build-image/core.ts';
import { record } from '../lambdas/record/core.ts';
import { stageWeights } from '../lambdas/stage-weights/core.ts';
import { startRegistry } from '../infra/local/registry.ts';
import { newTraining, startFixture } from '../test/helpers/aws-local.ts';
import { MiB, seconds, writeWeightsZip } from './lib.ts';

export interface SageMakerResults {
  weightsMiB: number;
  floor: number[];
  post: number[];
}

export async function measureSageMakerPostTraining(workDir: string, reps: number, log: (l: string) => void): Promise<SageMakerResults> {
  const registry = await startRegistry(join(workDir, 'sagemaker-registry'));
  const fx = await startFixture({ as: 'stage-weights', config: { trainers: { gpu: { backend: 'sagemaker', image: `${registry.host}/bench/trainer@sha256:${'0'.repeat(64)}` } } } });
  try {
    const client = new RegistryClient({ baseUrl: registry.url });
    log('sagemaker: pushing a 1 GiB template to the local registry');
    const template = await createLargeTemplate(client, 'bench/template', 'latest', 1024 * MiB);
    const zip = join(workDir, 'sagemaker-weights.zip');
    const files = { 'unet/diffusion_pytorch_model.safetensors': 400 * MiB, 'text_encoder/model.safetensors': 112 * MiB };
    await writeWeightsZip(zip, files);
    const floor: number[] = [];
    const post: number[] = [];
    for (let i = 0; i < reps; i++) {
      log(`sagemaker: floor and job end → version, run ${i + 1}/${reps}`);
      floor.push(await seconds(() => client.uploadBlob(`bench/floor-${i}`, createReadStream(zip))));
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
          const built = await buildImage(
            { ...staged.build_env, IMAGE_REPOSITORY: `${registry.host}/${t.model}`, ARCHIVE_MAX_ENTRIES: 100, ARCHIVE_MAX_UNCOMPRESSED_BYTES: 2 * 1024 * MiB },
            { s3: fx.operator.s3, storeFor: (r) => ({ store: client, repo: r.slice(registry.host.length + 1) }), log: () => undefined },
          );
          const t2 = Date.now();
          await record({ ...fx.operator, logs: undefined as never }, { action: 'version', training_id: t.id, build: { id: 'bench', digest: [built.IMAGE_DIGEST], image: [built.IMAGE_URI] } });
          log(`sagemaker: stage ${(t1 - t0) / 1000} s, build and push ${(t2 - t1) / 1000} s, record ${(Date.now() - t2) / 1000} s`);
        }),
      );
    }
    return { weightsMiB: Object.values(files).reduce((a, b) => a + b, 0) / MiB, floor, post };
  } finally {
    await fx.stop();
    await registry.stop();
  }
}
