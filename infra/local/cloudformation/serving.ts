/**
 * What the Serving construct tells its functions (their `sagemaker-endpoints` need: the endpoint
 * name prefix, the endpoints' role, the notification topics, the response path), read from the
 * synthesized `prediction-endpoint` function's environment with its references resolved to local
 * names, so local mode gives the functions what CloudFormation gives them on AWS.
 */
import { ENV } from '#shared/env';
import type { ServingValues } from '../../needs.ts';
import { referenceValues, resolveReferences, stateMachinesOf } from './state-machine.ts';
import type { Synthesized } from './synthesize.ts';

export function servingValuesOf(synth: Pick<Synthesized, 'template' | 'functions'>): ServingValues | undefined {
  const fn = synth.functions.find((f) => f.name === 'prediction-endpoint');
  const variables = fn && synth.template.Resources[fn.logicalId]?.Properties?.Environment?.Variables;
  if (!variables) return undefined;
  const machines = new Map(stateMachinesOf(synth).map((m) => [m.logicalId, m.arn]));
  const values = referenceValues(synth, machines);
  const read = (name: string) => {
    const value = resolveReferences(variables[name], values);
    if (typeof value !== 'string') throw new Error(`prediction-endpoint's ${name} did not resolve to a string`);
    return value;
  };
  return {
    endpointPrefix: read(ENV.endpointPrefix),
    endpointRoleArn: read(ENV.endpointRole),
    successTopicArn: read(ENV.predictionSuccessTopic),
    errorTopicArn: read(ENV.predictionErrorTopic),
    outputPath: read(ENV.predictionOutputPath),
    ...(variables[ENV.templateVariantProject] ? { variantBuild: { project: read(ENV.templateVariantProject), repositoryPrefix: read(ENV.templateRepositoryPrefix) } } : {}),
  };
}
