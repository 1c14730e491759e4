/**
 * The deployment's configuration, read one way by the CDK app (bin/app.ts) and by local mode:
 * cdk.json's context key `dreambooth`, JSON in the same schema merged over it (`-c config=FILE`,
 * local mode's `--config FILE`), parsed; an invalid one fails naming each offending key and
 * where the configuration came from.
 */
import { readFileSync } from 'node:fs';
import { type Config, mergeConfig, parseConfig } from '#shared/config';

const CDK_JSON = new URL('../cdk.json', import.meta.url);

/** cdk.json's context key `dreambooth`: the configuration as shipped, or as edited in place. */
export function shippedConfiguration(): unknown {
  const cdkJson = JSON.parse(readFileSync(CDK_JSON, 'utf8')) as { context?: { dreambooth?: unknown } };
  return cdkJson.context?.dreambooth ?? {};
}

export interface ConfigurationSources {
  /** The base. @default cdk.json's (the CDK app passes the context the CLI read from it) */
  base?: unknown;
  /** JSON in the same schema, merged over the base. */
  override?: unknown;
  /** Values kept where neither sets one (local mode allows only loopback egress). */
  defaults?: unknown;
  /** Where the configuration came from, as an error names it. */
  source: string;
}

export function loadConfiguration(s: ConfigurationSources): Config {
  const merged = mergeConfig(s.base ?? shippedConfiguration(), s.override ?? {});
  return parseConfig(s.defaults === undefined ? merged : mergeConfig(s.defaults, merged), s.source);
}
