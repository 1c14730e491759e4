/**
 * An endpoint's instance in local mode: what answers SageMaker's `GET /ping` and
 * `POST /invocations` for a model's image —
 * - the demo template in-process (serving/demo-template/), when the image's config has the label
 *   `ai.dreambooth.demo-template` = "1"; its weights are the label `ai.dreambooth.weights-digest`,
 *   or a request's `replicate_weights` (a weights version's URL on its template's endpoint),
 *   fetched through local mode's egress rules;
 * - else the image as a container on the local docker engine (./inference-container.ts), as
 *   SageMaker hosting runs it; without an engine the endpoint cannot serve it, and says so.
 * The image's config is read from the local registry or OCI layout the image reference names.
 */
import { createHash } from 'node:crypto';
import { request } from '#shared/http';
import { readImageConfig } from '#shared/oci/append';
import { OciLayout } from '#shared/oci/layout';
import { RegistryClient } from '#shared/oci/registry';
import { startDemoTemplateServer } from '#serving/demo-template/server';
import { LOOPBACK } from '../configuration.ts';
import { dockerReachable } from '../docker.ts';
import { startContainerInstance } from './inference-container.ts';

export const DEMO_TEMPLATE_LABEL = 'ai.dreambooth.demo-template';
export const WEIGHTS_DIGEST_LABEL = 'ai.dreambooth.weights-digest';

export interface Instance {
  /** Where `/ping` and `/invocations` answer. */
  url: string;
  stop(): Promise<void>;
  /** Resolves with the reason if the instance ends by itself (a container whose model server died); never after stop(). */
  ended?: Promise<string>;
}

/** An endpoint that cannot start: its FailureReason. */
export class InstanceFailed extends Error {}

/** The labels of an image's config; InstanceFailed when the image cannot be read. */
export async function imageLabels(image: string): Promise<Record<string, string>> {
  const { store, repo, ref } = imageStoreOf(image);
  try {
    const { config } = await readImageConfig(store, repo, ref);
    return (config.config?.Labels ?? {}) as Record<string, string>;
  } catch (e) {
    throw new InstanceFailed(`The image '${image}' could not be read from the local image store: ${(e as Error).message}`);
  }
}

/** `host:port/repo@sha256:…`, `host:port/repo:tag`, `oci:<dir>@sha256:…` or `oci:<dir>:<tag>`. */
export function imageStoreOf(image: string): { store: RegistryClient | OciLayout; repo: string; ref: string } {
  const at = image.lastIndexOf('@');
  const [name, ref] = at > 0 ? [image.slice(0, at), image.slice(at + 1)] : splitTag(image);
  if (name.startsWith('oci:')) return { store: new OciLayout(name.slice(4)), repo: '', ref };
  const slash = name.indexOf('/');
  if (slash < 0) throw new InstanceFailed(`The image '${image}' names no registry`);
  return { store: new RegistryClient({ baseUrl: `http://${name.slice(0, slash)}` }), repo: name.slice(slash + 1), ref };
}

function splitTag(image: string): [string, string] {
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/') && colon > 0) return [image.slice(0, colon), image.slice(colon + 1)];
  return [image, 'latest'];
}

export interface InstanceOptions {
  log: (line: string) => void;
  /** How long a container may take to answer `/ping`. @default 600 s */
  startSeconds?: number;
  /** The model's PrimaryContainer.Environment, the container's environment. */
  environment?: Record<string, string>;
  /** The local mode's id, which labels the container (./inference-container.ts). */
  owner?: string;
  /** Where the demo template may fetch per-request weights from. @default LOOPBACK (local mode's egress) */
  egressAllow?: string[];
}

/** The largest weights file the demo template fetches per request. */
const MAX_WEIGHTS_BYTES = 256 * 1024 * 1024;

/** The demo template's per-request weights, named by their sha256; the URL (a credential) is never said. */
export function fetchWeights(allow: string[]): (url: string) => Promise<string> {
  return async (url) => {
    const res = await request(url, { allow, timeoutMs: 60_000, maxResponseBytes: MAX_WEIGHTS_BYTES });
    if (res.status !== 200) throw new Error(`the weights could not be fetched: HTTP ${res.status}${res.status === 403 ? ' (the URL expired?)' : ''}`);
    return `sha256:${createHash('sha256').update(res.body).digest('hex')}`;
  };
}

/** Starts one instance for the model's image; InstanceFailed with the reason when it cannot. */
export async function startInstance(endpoint: string, image: string, opts: InstanceOptions): Promise<Instance> {
  const labels = await imageLabels(image);
  if (labels[DEMO_TEMPLATE_LABEL] === '1') {
    const digest = labels[WEIGHTS_DIGEST_LABEL];
    if (!digest) throw new InstanceFailed(`The image '${image}' is a demo template without the label ${WEIGHTS_DIGEST_LABEL}`);
    const server = await startDemoTemplateServer({ weights: { digest }, weightsFor: fetchWeights(opts.egressAllow ?? LOOPBACK), log: opts.log });
    return { url: server.url, stop: () => server.stop() };
  }
  if (image.startsWith('oci:')) throw new InstanceFailed(`The image '${image}' is in an OCI layout on disk, which a docker engine cannot run; start local mode with a registry`);
  if (!(await dockerReachable())) {
    throw new InstanceFailed(`local mode needs a docker engine to serve the image '${image}' (set DOCKER_HOST or start dockerd); only demo-template images are served without one`);
  }
  try {
    return await startContainerInstance(endpoint, image, { log: opts.log, startSeconds: opts.startSeconds ?? 600, environment: opts.environment, owner: opts.owner });
  } catch (e) {
    throw new InstanceFailed((e as Error).message);
  }
}
