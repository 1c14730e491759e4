/**
 * One SageMaker endpoint per image version, and one per template for weights versions (their
 * weights come with each request), made on the first prediction. Its model, endpoint
 * configuration and endpoint share one name: the stack's prefix (IAM scopes every grant to it)
 * and endpointKeyOf(), cut to SageMaker's 63 characters.
 */
import type { Config } from '../config.ts';
import type { VersionRecord } from '../store.ts';

const NAME_MAX = 63;

/** The endpoint (and model, and endpoint configuration) name of a version. */
export function endpointNameFor(prefix: string, version: string): string {
  return `${prefix}${version}`.slice(0, NAME_MAX);
}

/**
 * What names a version's endpoint: the version id, or for a weights version `t` and its
 * template's digest, so that every version of one template shares one (warm) endpoint.
 */
export function endpointKeyOf(v: Pick<VersionRecord, 'id' | 'weights' | 'template'>): string {
  return v.weights ? `t${v.template.digest.replace(/^sha256:/, '')}` : v.id;
}

export interface EndpointSettings {
  instance_type: string;
  max_instances: number;
  idle_minutes: number;
  invocation_timeout_seconds: number;
  max_concurrent_invocations_per_instance: number;
}

/** How a template's versions are served: its catalog entry's `serving` over the `serving` section. */
export function endpointSettings(config: Config, template: string): EndpointSettings {
  const own = config.templates.catalog[template]?.serving ?? {};
  const s = config.serving;
  return {
    instance_type: own.instance_type ?? s.instance_type,
    max_instances: own.max_instances ?? s.max_instances,
    idle_minutes: own.idle_minutes ?? s.idle_minutes,
    invocation_timeout_seconds: s.invocation_timeout_seconds,
    max_concurrent_invocations_per_instance: s.max_concurrent_invocations_per_instance,
  };
}
