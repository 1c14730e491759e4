/**
 * One SageMaker endpoint per version, made on its first prediction. Its model, endpoint
 * configuration and endpoint share one name: the stack's prefix (IAM scopes every grant to it)
 * and the version id, cut to SageMaker's 63 characters.
 */
import type { Config } from '../config.ts';

const NAME_MAX = 63;

/** The endpoint (and model, and endpoint configuration) name of a version. */
export function endpointNameFor(prefix: string, version: string): string {
  return `${prefix}${version}`.slice(0, NAME_MAX);
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
