/**
 * Build and push, on the same data: a template of `templateBytes` in the local registry and a
 * trainer-shaped zip of weights. Medians of: the floor (the weights file uploaded as one blob),
 * the append build (template layers mounted, one layer streamed from the zip, config, manifest)
 * and the docker build (unzip, docker build FROM the template, docker push), each from a clean
 * state as a fresh CodeBuild machine would be.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { appendLayer } from '#shared/oci/append';
import { RegistryClient } from '#shared/oci/registry';
import { fileSource } from '#shared/archive';
import { createLargeTemplate } from '#shared/oci/template';
import { imageLabels, weightsLayer } from '../codebuild/build-image/core.ts';
import { readAhead } from '../codebuild/build-image/read-ahead.ts';
import { startRegistry } from '../infra/local/ecr.ts';
import type { DockerEngine } from './docker.ts';
import { MiB, seconds, writeWeightsZip } from './lib.ts';

export interface BuildResults {
  templateMiB: number;
  weightsMiB: number;
  floor: number[];
  append: number[];
  docker: number[] | null;
  templateSeconds: number;
}

const TRAINING_ID = 'bench0123456789abcdef';

export async function measureBuilds(workDir: string, reps: number, docker: DockerEngine | null, log: (l: string) => void): Promise<BuildResults> {
  const registry = await startRegistry(join(workDir, 'registry'));
  try {
    const client = new RegistryClient({ baseUrl: registry.url });
    const templateBytes = 1024 * MiB;
    log('pushing a 1 GiB template to the local registry');
    let template = '';
    const templateSeconds = await seconds(async () => (template = await createLargeTemplate(client, 'bench/template', 'latest', templateBytes)));
    const zip = join(workDir, 'weights.zip');
    const files = { 'unet/diffusion_pytorch_model.safetensors': 400 * MiB, 'text_encoder/model.safetensors': 112 * MiB };
    await writeWeightsZip(zip, files);
    const weightsBytes = Object.values(files).reduce((a, b) => a + b, 0);

    const source = await fileSource(zip);
    const appendBuild = (i: number) =>
      appendLayer({
        source: client,
        sourceRepo: 'bench/template',
        sourceRef: template,
        target: client,
        // A new repository each time: the template's layers are mounted anew, as for a new model.
        targetRepo: `bench/append-${Date.now()}-${i}`,
        tag: TRAINING_ID,
        // What the CodeBuild script reads S3 through: a random-access source, read ahead.
        layer: () => weightsLayer(readAhead(source), { maxEntries: 100, maxBytes: 2 * weightsBytes }),
        labels: imageLabels('bench', TRAINING_ID),
        created: new Date(0),
      });
    const dockerBuild = docker && dockerBuilder(docker, workDir, zip, `${registry.host}/bench/template@${template}`, registry.host);
    // Alternated, run by run, so a drift in the machine's load hits each kind alike.
    const floor: number[] = [];
    const append: number[] = [];
    const dockerTimes: number[] | null = dockerBuild ? [] : null;
    for (let i = 0; i < reps; i++) {
      log(`build run ${i + 1} of ${reps}: the floor, the append build+push${dockerBuild ? ', the docker build+push' : ''}`);
      floor.push(await seconds(() => client.uploadBlob('bench/floor', createReadStream(zip))));
      append.push(await seconds(() => appendBuild(i)));
      if (dockerBuild) dockerTimes!.push(await seconds(() => dockerBuild(i)));
    }
    return { templateMiB: templateBytes / MiB, weightsMiB: weightsBytes / MiB, floor, append, docker: dockerTimes, templateSeconds };
  } finally {
    await registry.stop();
  }
}

/** What buildspecs/build-model.yml does after its download: unzip, docker build, docker push. */
function dockerBuilder(engine: DockerEngine, workDir: string, zip: string, templateImage: string, host: string) {
  const ctx = join(workDir, 'docker-context');
  return async (i: number) => {
    const image = `${host}/bench/docker-${Date.now()}-${i}:${TRAINING_ID}`;
    // A fresh CodeBuild machine has no image cache: neither has this engine.
    await engine.docker('image', 'rm', '-f', templateImage).catch(() => undefined);
    await engine.docker('builder', 'prune', '-af').catch(() => undefined);
    await rm(ctx, { recursive: true, force: true });
    await mkdir(ctx, { recursive: true });
    try {
      await runUnzip(zip, join(ctx, 'weights'));
      await writeFile(join(ctx, 'Dockerfile'), `FROM ${templateImage}\nCOPY weights /src/weights\n`);
      await engine.docker('build', '-q', '--label', 'org.opencontainers.image.description=bench', '--label', `ai.dreambooth.training-id=${TRAINING_ID}`, '-t', image, ctx);
      await engine.docker('push', '-q', image);
    } finally {
      await engine.docker('image', 'rm', '-f', image).catch(() => undefined);
    }
  };
}

const runUnzip = (zip: string, dir: string) => promisify(execFile)('unzip', ['-q', zip, '-d', dir]);
