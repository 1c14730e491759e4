/**
 * Cog-style template images built from nothing (no base image, no docker): the stand-in for
 * `vanilla-template` in local mode, the catalog's `demo-template` (served in-process by local
 * mode), and a large one for the build benchmark. Their content is fixed (creation time
 * included), so the same call always yields the same digest.
 */
import { createCipheriv } from 'node:crypto';
import { Readable } from 'node:stream';
import YAML from 'yaml';
import { demoTemplateOpenApi } from '../serving/demo-template-schema.ts';
import { tarEntries, type TarEntry } from './tar.ts';
import { MediaTypes, sha256, type ImageConfig, type ImageStore } from './types.ts';

export type ImageFormat = 'oci' | 'docker';

const CREATED = '2024-01-01T00:00:00Z';
const COG_VERSION = '0.9.26';

const cogYaml = { build: { python_version: '3.11', gpu: true }, predict: 'predict.py:Predictor' };

const PREDICT_PY = `import os

from cog import BasePredictor, Input

WEIGHTS = "./weights"


class Predictor(BasePredictor):
    def setup(self):
        # Trained weights are baked in at /src/weights; the template itself has none.
        self.weights = WEIGHTS if os.path.exists(os.path.join(WEIGHTS, "model_index.json")) else None

    def predict(self, prompt: str = Input(description="Prompt", default="a photo of sks dog")) -> str:
        if self.weights is None:
            raise Exception("This is a template, not a real model")
        return f"{prompt} (weights: {sorted(os.listdir(self.weights))})"
`;

const openapiSchema = {
  openapi: '3.0.2',
  info: { title: 'Cog', version: '0.1.0' },
  paths: {},
  components: {
    schemas: {
      Input: {
        type: 'object',
        title: 'Input',
        properties: { prompt: { type: 'string', title: 'Prompt', description: 'Prompt', default: 'a photo of sks dog', 'x-order': 0 } },
      },
      Output: { type: 'string', title: 'Output' },
    },
  },
};

/** A tiny Cog template (returns its manifest digest, `sha256:…`): `src/cog.yaml` and a `src/predict.py` that refuses to run without weights. */
export function createDemoTemplate(store: ImageStore, repo: string, tag: string, format: ImageFormat = 'oci'): Promise<string> {
  return pushImage(store, repo, tag, format, [cogLayer]);
}

/**
 * The label by which local mode's stand-in for SageMaker hosting serves a version in-process
 * (serving/demo-template) instead of running its image: versions built on the `demo-template`.
 */
export const DEMO_TEMPLATE_LABEL = 'ai.dreambooth.demo-template';

/**
 * The catalog's `demo-template` (returns its manifest digest): the tiny Cog template, described
 * by the demo template's own schema and labelled for local mode to serve in-process.
 */
export function createServedDemoTemplate(store: ImageStore, repo: string, tag: string, format: ImageFormat = 'oci'): Promise<string> {
  // With `replicate_weights`: the same image is the catalog's demo-lora, which loads a weights
  // version's weights through that input (local mode's hosting serves it with per-request weights).
  return pushImage(store, repo, tag, format, [cogLayer], { openapi: demoTemplateOpenApi(true), labels: { [DEMO_TEMPLATE_LABEL]: '1' } });
}

/** The demo template plus one incompressible layer of `bytes` bytes, streamed (for the build benchmark). */
export function createLargeTemplate(store: ImageStore, repo: string, tag: string, bytes: number, format: ImageFormat = 'oci'): Promise<string> {
  const filler = () => tarEntries([{ path: 'filler.bin', size: bytes, stream: () => incompressible(bytes) }], 'opt/');
  return pushImage(store, repo, tag, format, [cogLayer, filler]);
}

function cogLayer(): Readable {
  const file = (path: string, text: string): TarEntry => ({ path, size: Buffer.byteLength(text), stream: () => Readable.from([Buffer.from(text)]) });
  return tarEntries([file('cog.yaml', YAML.stringify(cogYaml)), file('predict.py', PREDICT_PY)], 'src/');
}

/** Deterministic bytes that no compressor can shrink: an AES-CTR keystream with a fixed key. */
function incompressible(bytes: number): Readable {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16), Buffer.alloc(16));
  const zeros = Buffer.alloc(1024 * 1024);
  return Readable.from(
    (function* () {
      for (let left = bytes; left > 0; left -= zeros.length) yield cipher.update(zeros.subarray(0, Math.min(left, zeros.length)));
    })(),
  );
}

interface Described {
  /** The Cog OpenAPI document of the label `run.cog.openapi_schema`. */
  openapi: unknown;
  labels?: Record<string, string>;
}

async function pushImage(
  store: ImageStore,
  repo: string,
  tag: string,
  format: ImageFormat,
  layers: (() => Readable)[],
  described: Described = { openapi: openapiSchema },
): Promise<string> {
  const docker = format === 'docker';
  const pushed = [];
  for (const layer of layers) pushed.push(await store.uploadBlob(repo, layer()));
  const config: ImageConfig = {
    created: CREATED,
    architecture: 'amd64',
    os: 'linux',
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'PYTHONUNBUFFERED=1', 'LANG=C.UTF-8'],
      Entrypoint: ['/usr/bin/tini', '--'],
      Cmd: ['python', '-m', 'cog.server.http'],
      WorkingDir: '/src',
      ExposedPorts: { '5000/tcp': {} },
      Labels: {
        'run.cog.version': COG_VERSION,
        'run.cog.config': JSON.stringify(cogYaml),
        'run.cog.openapi_schema': JSON.stringify(described.openapi),
        ...described.labels,
      },
    },
    rootfs: { type: 'layers', diff_ids: pushed.map((l) => l.digest) },
    history: pushed.map((_, i) => ({ created: CREATED, created_by: i === 0 ? 'COPY . /src # demo template' : 'COPY filler.bin /opt/' })),
  };
  const configBody = Buffer.from(JSON.stringify(config));
  const configBlob = await store.uploadBlob(repo, configBody, sha256(configBody));
  const mediaType = docker ? MediaTypes.dockerManifest : MediaTypes.ociManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: docker ? MediaTypes.dockerConfig : MediaTypes.ociConfig, digest: configBlob.digest, size: configBlob.size },
    layers: pushed.map((l) => ({ mediaType: docker ? MediaTypes.dockerLayerTar : MediaTypes.ociLayerTar, digest: l.digest, size: l.size })),
  };
  return store.putManifest(repo, tag, Buffer.from(JSON.stringify(manifest)), mediaType);
}
