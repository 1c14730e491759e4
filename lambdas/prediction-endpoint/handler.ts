import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Context } from 'aws-lambda';
import { codebuild } from '#shared/aws';
import { baseDeps, once } from '#shared/deps';
import { logger } from '#shared/log';
import { SERVING_ADAPTER } from '#shared/oci/serving-variant';
import { autoscaling, cloudwatch, sagemaker, servingEnv } from '#shared/serving/clients';
import { EndpointEvent } from '#shared/serving/steps';
import { directTemplateVariants, templateVariants } from '#shared/serving/template-variant';
import { buildTemplateVariants } from '#shared/serving/template-variant-build';
import { type EndpointDeps, ensureEndpoint } from './core.ts';
import { sweepEndpoints } from './sweep.ts';

/** The adapter beside the bundle (local mode copies it there), else in the repository's serving/. */
const adapter = () => readFile(join(__dirname, SERVING_ADAPTER)).catch(() => readFile(join(__dirname, '..', '..', 'serving', SERVING_ADAPTER)));

const deps = once((): EndpointDeps => {
  const base = baseDeps();
  const serving = servingEnv();
  // Local mode's templates are in a registry the step writes; on AWS a build makes the variant in ECR.
  const build = serving.variantBuild && buildTemplateVariants({ ...base, codebuild: codebuild() }, serving.variantBuild);
  return { ...base, sagemaker: sagemaker(), autoscaling: autoscaling(), cloudwatch: cloudwatch(), serving, templateVariants: templateVariants(directTemplateVariants(adapter), build) };
});

export const handler = async (event: unknown, context?: Context) => {
  const ev = EndpointEvent.parse(event);
  if (ev.action === 'sweep') {
    const log = logger('prediction-endpoint', { action: 'sweep' }, context);
    const out = await sweepEndpoints(deps(), log);
    log.info('swept idle endpoints', out);
    return out;
  }
  const log = logger('prediction-endpoint', { prediction_id: ev.prediction_id }, context);
  const out = await ensureEndpoint(deps(), ev.prediction_id, log);
  log.info(out.ready ? 'the endpoint is ready' : 'waiting for the endpoint', { ...out });
  return out;
};
