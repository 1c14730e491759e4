/**
 * Local mode's configuration: cdk.json's, `--config` merged over it, completed with what local
 * mode starts for it — the image store (a registry, or an OCI layout on disk), two small Cog
 * templates made at start (the demo template, also the catalog's demo-lora, and a stand-in for
 * vanilla-template), a server per
 * demo trainer slot — and the build strategy it can run.
 */
import { join } from 'node:path';
import { mergeConfig, parseConfig, type Config } from '#shared/config';
import { loadConfiguration } from '../configuration.ts';
import { OciLayout } from '#shared/oci/layout';
import { RegistryClient } from '#shared/oci/registry';
import { createDemoTemplate, createServedDemoTemplate, type ImageFormat } from '#shared/oci/template';
import { WEIGHTS_INPUT } from '#shared/serving/demo-template-schema';
import type { ImageStore as Store } from '#shared/oci/types';
import { sagemakerTrainers } from '#shared/trainers/sagemaker/training-jobs';
import { startDemoTrainerServer } from '../../lambdas/demo-trainer/server.ts';
import { appendWorkers } from './codebuild/append.ts';
import type { BuildStrategy } from './codebuild/build-model.ts';
import { dockerReachable } from './docker.ts';
import { registryInstalled, startRegistry } from './ecr.ts';
import { listenSticky, type MovedServer } from './ports.ts';

/** Local mode's egress: loopback only, unless configured. */
export const LOOPBACK = ['127.0.0.0/8', '::1/128'];

export interface ConfigurationOptions {
  dataDir: string;
  /** JSON in the `dreambooth` schema merged over cdk.json's. */
  configOverride?: unknown;
  /** `HOST:PORT` of a registry to use instead of starting one. */
  registry?: string;
  /** `none` forces the OCI layout even when a registry could be started. */
  registryMode?: 'auto' | 'none';
  build?: BuildStrategy | 'auto';
  /** Where the API answers: the demo trainers upload their outputs there. */
  publicUrl: string;
  /** Keeps what a step started, to stop it with local mode. */
  onStop: (stop: () => Promise<void>) => void;
  note: (line: string) => void;
  trainerLog: (line: string) => void;
}

export interface LocalConfiguration {
  config: Config;
  buildStrategy: BuildStrategy;
  images: ImageStore;
  /** Demo trainer servers that could not have their last port back (./moved-servers.ts follows them). */
  moved: MovedServer[];
}

/** A registry's `host:port`, or an OCI layout on disk. */
export type ImageStore = { registryHost: string; layoutDir: null } | { registryHost: null; layoutDir: string };

export async function localConfiguration(o: ConfigurationOptions): Promise<LocalConfiguration> {
  const base = loadConfig(o.configOverride);
  const images = await startImageStore(o);
  const buildStrategy = await chooseBuild(o.build ?? 'auto', base.build.strategy, images.registryHost, o.note);
  // Its worker loads once local mode serves (./start.ts): the first build then starts at once.
  if (buildStrategy === 'append') o.onStop(() => appendWorkers.stop());
  const templates = await createLocalTemplates(images, localDefaultTemplate(o.configOverride));
  const demo = await startDemoTrainers(base, o);
  const trainers = { ...demo.trainers, ...(await unavailableSageMakerTrainers(base, o.note)) };
  const config = parseConfig(mergeConfig(base, { trainers, registry: registryConfig(images), templates }), 'local configuration');
  return { config, buildStrategy, images, moved: demo.moved };
}

/** cdk.json's configuration, the override merged over it; egress allows only loopback and endpoints are looked at every second unless configured. */
function loadConfig(override: unknown): Config {
  return loadConfiguration({ override, defaults: { egress: { allow: LOOPBACK }, serving: { poll_seconds: 1 } }, source: 'local configuration' });
}

/** The image store: a registry (given, or Debian's started here) or an OCI layout on disk. */
async function startImageStore(o: ConfigurationOptions): Promise<ImageStore> {
  if (o.registry) return { registryHost: o.registry, layoutDir: null };
  if (o.registryMode !== 'none' && registryInstalled()) {
    const registry = await startRegistry(join(o.dataDir, 'registry'));
    o.onStop(() => registry.stop());
    return { registryHost: registry.host, layoutDir: null };
  }
  return { registryHost: null, layoutDir: join(o.dataDir, 'images') };
}

const registryConfig = (images: ImageStore) =>
  images.registryHost
    ? { type: 'oci', host: images.registryHost, credentials_secret: 'local/registry' }
    : { type: 'layout', dir: images.layoutDir };

/**
 * The templates local mode makes at start, each a tiny Cog-style image: `demo-template`, which
 * local mode serves in-process (so a demo version runs a prediction with Node alone), and a
 * stand-in for vanilla-template. The demo template is the default unless `--config` names
 * another (offline, the images of the deployed catalog are out of reach).
 */
async function createLocalTemplates(images: ImageStore, configuredDefault: string | undefined) {
  const make = async (name: string, create: (store: Store, repo: string, tag: string, format?: ImageFormat) => Promise<string>) => {
    const { registryHost } = images;
    const repository = registryHost === null ? `oci:${join(images.layoutDir, 'templates', name)}` : `${registryHost}/templates/${name}`;
    const store = registryHost ? new RegistryClient({ baseUrl: `http://${registryHost}` }) : new OciLayout(repository.slice(4));
    const digest = (await create(store, registryHost ? `templates/${name}` : '', 'latest')).replace(/^sha256:/, '');
    return { repository, digests: [digest] };
  };
  const demo = await make('demo-template', createServedDemoTemplate);
  return {
    default: configuredDefault ?? 'demo-template',
    catalog: {
      'demo-template': {
        ...demo,
        // What the demo trainer returns: a diffusers folder (its weights only feed the picture).
        weights: 'diffusers',
        description: "Local mode's demo: served in-process, it renders a small PNG from the prompt, the seed and the version's weights, in well under a second, without a GPU or docker.",
        inputs: 'prompt, seed, num_outputs, width, height',
      },
      // The same image, loading each version's weights through its replicate_weights input: a
      // training on it records a version without a build, and the demo trainer returns one file.
      'demo-lora': {
        ...demo,
        weights: { format: 'any', input: WEIGHTS_INPUT },
        description: "Local mode's demo template for weights versions: no image per version, the weights (a single lora.safetensors) are handed to it per prediction.",
        inputs: 'prompt, seed, num_outputs, width, height',
      },
      'vanilla-template': await make('vanilla-template', createDemoTemplate),
    },
  };
}

const localDefaultTemplate = (override: unknown): string | undefined =>
  (override as { templates?: { default?: string } } | undefined)?.templates?.default;

/**
 * Cog-protocol servers for each demo trainer without a URL; their URLs, by trainer name. The
 * demo trainer runs one prediction at a time, like a Cog server: `concurrency` of them make its
 * pool, one server per slot.
 */
async function startDemoTrainers(base: Config, o: ConfigurationOptions): Promise<{ trainers: Record<string, unknown>; moved: MovedServer[] }> {
  const trainers: Record<string, unknown> = {};
  const moved: MovedServer[] = [];
  for (const [name, t] of Object.entries(base.trainers)) {
    if (t.backend !== 'demo' || t.url || t.urls) continue;
    const urls: string[] = [];
    for (let i = 0; i < (t.concurrency ?? 1); i++) {
      const demo = await startDemoTrainerServer({
        stepsPerSecond: t.steps_per_second,
        uploadUrl: `${o.publicUrl}/v1/trainer-uploads/`,
        allow: base.egress.allow,
        log: o.trainerLog,
        // Its port and its run in progress, kept across restarts (lambdas/demo-trainer/server.ts).
        stateFile: join(o.dataDir, 'demo-trainers', `${name}-${i}.json`),
        listen: listenSticky,
      });
      o.onStop(() => demo.stop());
      urls.push(demo.url);
      if (demo.movedFrom) moved.push({ from: demo.movedFrom, to: demo.url });
    }
    trainers[name] = { urls, concurrency: 1 };
  }
  return { trainers, moved };
}

/** A sagemaker trainer's job runs in a container on the local docker engine, or not at all: refused at submit. */
async function unavailableSageMakerTrainers(base: Config, note: (line: string) => void): Promise<Record<string, unknown>> {
  const names = sagemakerTrainers(base).map(([name]) => name);
  if (names.length === 0 || (await dockerReachable())) return {};
  note('no docker engine reachable: sagemaker trainers are refused');
  const unavailable = 'local mode runs its SageMaker job in a container, and no docker engine is reachable (set DOCKER_HOST)';
  return Object.fromEntries(names.map((name) => [name, { unavailable }]));
}

/**
 * `--build` wins; otherwise the configuration's `build.strategy`. A configured docker build
 * falls back to append when no engine is reachable (local mode must run without Docker); an
 * explicit `--build docker` does not.
 */
async function chooseBuild(
  wanted: BuildStrategy | 'auto',
  configured: BuildStrategy,
  registryHost: string | null,
  note: (line: string) => void,
): Promise<BuildStrategy> {
  const strategy = wanted === 'auto' ? configured : wanted;
  if (strategy === 'append') return 'append';
  if (registryHost !== null && (await dockerReachable())) return 'docker';
  if (wanted === 'docker') {
    throw new Error('--build docker needs a reachable docker engine (DOCKER_HOST or /var/run/docker.sock) and a registry');
  }
  note('build.strategy is docker, but no docker engine and registry are reachable: building with append');
  return 'append';
}
