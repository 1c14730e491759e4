/** Which template image a request builds on. */
import type { Config } from '#shared/config';
import { badRequest } from '#shared/errors';

export interface ResolvedTemplate {
  name: string;
  repository: string;
  digest: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

export function resolveTemplate(config: Config, ref: string | undefined): ResolvedTemplate {
  const catalog = config.templates.catalog;
  if (ref === undefined) return byName(config, config.templates.default, 'templates.default');

  if (HEX64.test(ref)) {
    for (const [name, t] of Object.entries(catalog)) if (t.digests.includes(ref)) return { name, repository: t.repository, digest: ref };
    throw badRequest(
      `template_version: ${ref} is not a digest pinned in the template catalog; pass <template>@sha256:<digest> ` +
        `(templates: ${Object.keys(catalog).join(', ')}) or a full image reference <repository>@sha256:<digest>`,
    );
  }
  const at = ref.match(/^([a-z0-9.:_/-]+)@sha256:([0-9a-f]{64})$/);
  if (at) {
    const [, repo, digest] = at as unknown as [string, string, string];
    const entry = catalog[repo];
    if (entry) return { name: repo, repository: entry.repository, digest };
    if (repo.includes('/')) return { name: repo, repository: repo, digest };
    throw badRequest(`template_version: ${repo} is not a template of the catalog (${Object.keys(catalog).join(', ')})`);
  }
  if (catalog[ref]) return byName(config, ref, 'template_version');
  throw badRequest(
    'template_version: use a 64-hex digest, <template>@sha256:<digest>, a full image reference ' +
      `<repository>@sha256:<digest>, or a template name (${Object.keys(catalog).join(', ')})`,
  );
}

function byName(config: Config, name: string, field: string): ResolvedTemplate {
  const t = config.templates.catalog[name];
  if (!t) throw badRequest(`${field}: unknown template ${name}`);
  const digest = t.digests[0];
  if (!digest) {
    throw badRequest(
      `${field}: template ${name} has no pinned digest in the configuration; pass template_version as ${name}@sha256:<digest>`,
    );
  }
  return { name, repository: t.repository, digest };
}
