/**
 * Which template image a request builds on. Digests pinned in the catalog are trusted as they
 * are; any other digest is looked up in the registry (a HEAD of the manifest) and the image
 * must be a Cog template that loads its weights from /src/weights.
 *
 * The template also decides what weights it accepts (checked at staging): a catalog template
 * by its `weights` setting; an image outside the catalog by its `ai.dreambooth.weights` label
 * (`diffusers` or `any`), and `any` without one — the seed's contract is only that the
 * archive holds what the named Cog model supports.
 */
import type { Config, TemplateWeights, TemplateWeightsSetting } from '#shared/config';
import { weightsFormatOf, weightsInputOf } from '#shared/template-weights';
import { checkUrlSyntax, EgressError, egressGuard } from '#shared/egress';
import { badRequest } from '#shared/errors';
import { inputSchemaOf } from '#shared/input-schema';
import type { RegistryClient } from '#shared/oci/registry';
import type { ImageStore } from '#shared/oci/types';

export interface ResolvedTemplate {
  name: string;
  repository: string;
  digest: string;
  /** What stage-weights checks the trainer's output against. */
  weights: TemplateWeights;
  /** The input the template loads its weights from at run time: its versions are recorded without a build. */
  weights_input?: string;
}

/** The image label by which a template outside the catalog declares what it loads. */
export const WEIGHTS_LABEL = 'ai.dreambooth.weights';
/** The image label by which such a template names the input it loads its weights from (its `weights.input`). */
export const WEIGHTS_INPUT_LABEL = 'ai.dreambooth.weights-input';

/** Asks registries about images; replaced in tests. */
export interface TemplateRegistry {
  /** Whether `repository@sha256:<digest>` exists. */
  exists(repository: string, digest: string): Promise<boolean>;
  /** Why the image is not a usable Cog template (or null), and the weights its label declares. */
  inspect(repository: string, digest: string): Promise<Inspection>;
  /** The image's Cog OpenAPI document (its `run.cog.openapi_schema` label), or null without one. */
  openApi?(repository: string, digest: string): Promise<unknown>;
}

/** What an image's labels say of it as a template. */
export interface Inspection {
  problem: string | null;
  weights?: TemplateWeights;
  weights_input?: string;
}

/** The label in which Cog writes a model's OpenAPI document (inputs and output). */
export const OPENAPI_LABEL = 'run.cog.openapi_schema';

const HEX64 = /^[0-9a-f]{64}$/;

export async function resolveTemplate(config: Config, ref: string | undefined, registry: TemplateRegistry): Promise<ResolvedTemplate> {
  const catalog = config.templates.catalog;
  const names = Object.keys(catalog).join(', ');
  if (ref === undefined) return byName(config, config.templates.default, 'templates.default');

  if (HEX64.test(ref)) {
    for (const [name, t] of Object.entries(catalog)) if (t.digests.includes(ref)) return { name, repository: t.repository, digest: ref, ...weightsOf(t.weights) };
    // Not pinned: the seed's bare digest may still be a version of one of the catalog's templates.
    const tried = Object.entries(catalog);
    const found = await Promise.all(tried.map(([, t]) => registry.exists(t.repository, ref).catch(() => false)));
    const at = found.indexOf(true);
    if (at === -1) {
      throw badRequest(`template_version: no manifest sha256:${ref} in any catalog template (tried ${tried.map(([, t]) => t.repository).join(', ')})`);
    }
    const [name, t] = tried[at]!;
    return verified(registry, { name, repository: t.repository, digest: ref, ...weightsOf(t.weights) });
  }
  const at = ref.match(/^([a-z0-9.:_/-]+)@sha256:([0-9a-f]{64})$/);
  if (at) {
    const [, repo, digest] = at as unknown as [string, string, string];
    const entry = catalog[repo];
    if (entry) {
      const t = { name: repo, repository: entry.repository, digest, ...weightsOf(entry.weights) };
      if (entry.digests.includes(digest)) return t;
      return verified(registry, t, `${entry.repository}@sha256:${digest}`);
    }
    if (!repo.includes('/')) throw badRequest(`template_version: ${repo} is not a template of the catalog (${names})`);
    checkRegistryHost(config, repo);
    return verified(registry, { name: repo, repository: repo, digest, weights: 'any' }, ref, true);
  }
  if (catalog[ref]) return byName(config, ref, 'template_version');
  throw badRequest(
    `template_version: use a 64-hex digest, <template>@sha256:<digest>, a full image reference <repository>@sha256:<digest>, or a template name (${names})`,
  );
}

/** Checks an unpinned image; `byLabel`: the image's own label says what weights it takes (outside the catalog). */
async function verified(registry: TemplateRegistry, t: ResolvedTemplate, shown = `sha256:${t.digest}`, byLabel = false): Promise<ResolvedTemplate> {
  let exists: boolean;
  try {
    exists = await registry.exists(t.repository, t.digest);
  } catch (e) {
    throw badRequest(`template_version: could not ask the registry about ${shown}: ${(e as Error).message}`);
  }
  if (!exists) throw badRequest(`template_version: ${shown} does not exist in ${t.repository}`);
  const { problem, weights, weights_input } = await registry.inspect(t.repository, t.digest);
  if (problem) throw badRequest(`template_version: ${shown} ${problem}`);
  if (!byLabel) return t;
  return { ...t, ...(weights ? { weights } : {}), ...(weights_input ? { weights_input } : {}) };
}

function byName(config: Config, name: string, field: string): ResolvedTemplate {
  const t = config.templates.catalog[name];
  if (!t) throw badRequest(`${field}: unknown template ${name}`);
  const digest = t.digests[0];
  if (!digest) throw badRequest(`${field}: template ${name} has no pinned digest in the configuration; pass template_version as ${name}@sha256:<digest>`);
  return { name, repository: t.repository, digest, ...weightsOf(t.weights) };
}

/** A catalog entry's `weights` setting as a resolved template carries it. */
function weightsOf(w: TemplateWeightsSetting): Pick<ResolvedTemplate, 'weights' | 'weights_input'> {
  const input = weightsInputOf(w);
  return { weights: weightsFormatOf(w), ...(input ? { weights_input: input } : {}) };
}

/** A user-named registry is a user-supplied URL: it passes the egress guard too. */
function checkRegistryHost(config: Config, repo: string): void {
  try {
    checkUrlSyntax(`https://${repo.split('/')[0]}/`, { allow: config.egress.allow });
  } catch (e) {
    if (e instanceof EgressError) throw badRequest(`template_version: ${e.detail}`);
    throw e;
  }
}

/** Registries over HTTP(S) (plain HTTP on loopback, as docker does) and OCI layouts on disk. */
export function liveRegistry(allow: string[]): TemplateRegistry {
  const cache = new Map<string, Inspection>();
  // An image is immutable by digest: its schema is read once per container.
  const schemas = new Map<string, Promise<unknown>>();
  // The OCI clients load on first use: most requests name a pinned template and never need them.
  const open = async (repository: string): Promise<{ store: ImageStore; repo: string; registry: boolean }> => {
    if (repository.startsWith('oci:')) {
      const { OciLayout } = await import('#shared/oci/layout');
      return { store: new OciLayout(repository.slice(4)), repo: '', registry: false };
    }
    const { RegistryClient } = await import('#shared/oci/registry');
    const slash = repository.indexOf('/');
    const host = repository.slice(0, slash);
    const scheme = /^(127\.|localhost(:|$)|\[::1\])/.test(host) ? 'http' : 'https';
    const store = new RegistryClient({ baseUrl: `${scheme}://${host}`, timeoutMs: 10_000, egress: egressGuard(allow) });
    return { store, repo: repository.slice(slash + 1), registry: true };
  };
  return {
    async exists(repository, digest) {
      const { store, repo, registry } = await open(repository);
      if (registry) return (await (store as RegistryClient).headManifest(repo, `sha256:${digest}`)) !== null;
      return store.getManifest(repo, `sha256:${digest}`).then(
        () => true,
        () => false,
      );
    },
    async inspect(repository, digest) {
      const key = `${repository}@${digest}`;
      if (!cache.has(key)) {
        const { store, repo } = await open(repository);
        const { readImageConfig } = await import('#shared/oci/append');
        const { config } = await readImageConfig(store, repo, `sha256:${digest}`);
        const image = config.config as ImageSettings | undefined;
        const problem = cogProblem(image) ?? weightsLabelProblem(image);
        cache.set(key, problem ? { problem } : { problem, ...labelledWeights(image) });
      }
      return cache.get(key)!;
    },
    openApi(repository, digest) {
      const key = `${repository}@${digest}`;
      if (!schemas.has(key)) {
        const read = (async () => {
          const { store, repo } = await open(repository);
          const { readImageConfig } = await import('#shared/oci/append');
          const { config } = await readImageConfig(store, repo, `sha256:${digest}`);
          const label = (config.config as ImageSettings | undefined)?.Labels?.[OPENAPI_LABEL];
          return label === undefined ? null : JSON.parse(label);
        })();
        // A failed read is not kept: the registry may answer next time.
        read.catch(() => schemas.delete(key));
        schemas.set(key, read);
      }
      return schemas.get(key)!;
    },
  };
}

type ImageSettings = { Labels?: Record<string, string>; WorkingDir?: string };

function weightsLabelProblem(config: ImageSettings | undefined): string | null {
  const v = config?.Labels?.[WEIGHTS_LABEL];
  if (v !== undefined && v !== 'diffusers' && v !== 'any') return `has the label ${WEIGHTS_LABEL}=${JSON.stringify(v)}; it must be "diffusers" or "any"`;
  const input = config?.Labels?.[WEIGHTS_INPUT_LABEL];
  if (input !== undefined && !/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(input)) {
    return `has the label ${WEIGHTS_INPUT_LABEL}=${JSON.stringify(input)}; it must name an input of the template`;
  }
  return null;
}

function labelledWeights(config: ImageSettings | undefined): Omit<Inspection, 'problem'> {
  const weights = config?.Labels?.[WEIGHTS_LABEL] as TemplateWeights | undefined;
  const input = config?.Labels?.[WEIGHTS_INPUT_LABEL];
  return { ...(weights ? { weights } : {}), ...(input ? { weights_input: input } : {}) };
}

/** A Cog template carries Cog's labels and works in /src, where it loads ./weights. */
export function cogProblem(config: ImageSettings | undefined): string | null {
  const labels = Object.keys(config?.Labels ?? {});
  if (!labels.some((l) => l.startsWith('run.cog.') || l.startsWith('org.cogmodel.'))) {
    return 'is not a Cog template: it has no run.cog.* or org.cogmodel.* labels';
  }
  if ((config?.WorkingDir ?? '') !== '/src') {
    return `does not load weights from /src/weights: its working directory is ${config?.WorkingDir || '/'} (Cog templates use /src)`;
  }
  return null;
}

/**
 * A template that loads its weights from an input must have that input: checked at submit,
 * before a trainer runs, against its Cog schema (the `run.cog.openapi_schema` label, read once
 * per image).
 */
export async function checkWeightsInput(registry: TemplateRegistry, t: ResolvedTemplate): Promise<void> {
  if (!t.weights_input) return;
  const image = `${t.repository}@sha256:${t.digest}`;
  let doc: unknown = null;
  try {
    doc = registry.openApi ? await registry.openApi(t.repository, t.digest) : null;
  } catch (e) {
    throw badRequest(`template_version: could not read the Cog schema of template ${t.name} (${image}): ${(e as Error).message}`);
  }
  const properties = (inputSchemaOf(doc)?.properties ?? {}) as Record<string, unknown>;
  if (Object.hasOwn(properties, t.weights_input)) return;
  throw badRequest(
    `template_version: template ${t.name} takes its weights through the input ${t.weights_input}, but its Cog schema (the ${OPENAPI_LABEL} label of ${image}) has no input ${t.weights_input}; fix the template's weights.input (or its ${WEIGHTS_INPUT_LABEL} label)`,
  );
}
