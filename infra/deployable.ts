/**
 * What a deployment needs of the configuration beyond its schema (lambdas/shared/config.ts): the
 * schema also parses configurations that never deploy (the handlers' tests), so these rules are
 * checked where the stack is synthesized, by `cdk synth` and by local mode alike.
 */
import { type Config, ConfigError } from '#shared/config';

/** Fails synth, naming the key, where the service would refuse what the configuration invites. */
export function checkDeployable(config: Config): void {
  const name = config.templates.default;
  // A request without template_version builds on the default's newest pinned digest
  // (lambdas/api/templates.ts); without one, every such request would be a 400.
  if (config.templates.catalog[name]?.digests.length === 0) {
    throw new ConfigError(
      'Invalid dreambooth configuration for a deployment:\n' +
        `  dreambooth.templates.default: template ${name} has no pinned digest, so every request without template_version would be refused. ` +
        `Pin its image's manifest digest (64 hex, without "sha256:"; a Replicate version id is one) in dreambooth.templates.catalog.${name}.digests, ` +
        'or make the default a template that has one.',
    );
  }
}
