/**
 * A template's SageMaker variant made on AWS, where the template sits in a registry the endpoint
 * step does not write: a build of the template variant project (codebuild/mirror-image with
 * MODE=template-variant, infra/constructs/template-variant.ts) copies the template into the
 * stack's ECR (`<prefix>/templates/<template name>`) and appends the adapter layer, tagged
 * servingTag(<template digest>). The step starts the build and answers at once; the state
 * machine's wait loop asks again, and each call checks the build until it has ended. The
 * endpoint's record keeps the build (./endpoint-record.ts), so concurrent predictions start one.
 */
import { BatchGetBuildsCommand, type Build, type CodeBuildClient, StartBuildCommand } from '@aws-sdk/client-codebuild';
import { servingTag } from '../oci/serving-variant.ts';
import type { Store } from '../store.ts';
import { EndpointRecords } from './endpoint-record.ts';
import type { TemplateVariants } from './template-variant.ts';

export interface VariantBuildEnv {
  /** The template variant project's name. */
  project: string;
  /** `<ECR host>/<prefix>/templates`: each template's repository is beneath. */
  repositoryPrefix: string;
}

/** A claim that never recorded its build (the step stopped between) is taken over after this long. */
export const CLAIM_STALE_MS = 5 * 60_000;

/** ECR's rule for a path component; catalog template names already keep it. */
const repositoryPart = (name: string) => name.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '') || 'template';

/** The template's repository in the stack's ECR. */
export const templateRepository = (env: VariantBuildEnv, name: string) => `${env.repositoryPrefix}/${repositoryPart(name)}`;

export function buildTemplateVariants(d: { codebuild: CodeBuildClient; store: Store; now: () => Date }, env: VariantBuildEnv): TemplateVariants {
  const records = new EndpointRecords(d.store);
  return async (t, endpoint) => {
    const digest = t.digest.replace(/^sha256:/, '');
    const record = await records.get(endpoint);
    if (record?.variant_image) return { image: record.variant_image };
    const image = `${templateRepository(env, t.name)}:${servingTag(digest)}`;
    const waiting = { waiting: `making the SageMaker image of the template ${t.name} (its image copied into ECR with the serving adapter, once per template digest): a CodeBuild build, usually a few minutes` };
    if (record?.variant_build) {
      const build = await describeBuild(d.codebuild, record.variant_build);
      if (build?.buildStatus === 'IN_PROGRESS') return waiting;
      if (build?.buildStatus === 'SUCCEEDED') {
        await records.setVariant(endpoint, { variant_image: image });
        return { image };
      }
      // Failed, stopped, timed out, or gone: the next prediction builds again.
      await records.setVariant(endpoint, { variant_build: null, variant_claimed_at: null });
      throw new Error(`its build ${record.variant_build} ${build ? `ended ${String(build.buildStatus).toLowerCase()}` : 'no longer exists'}: ${build ? buildReason(build) : 'start a prediction again'}`);
    }
    const now = d.now();
    if (!(await records.claimVariantBuild(endpoint, now, new Date(now.getTime() - CLAIM_STALE_MS)))) return waiting;
    const out = await d.codebuild.send(
      new StartBuildCommand({
        projectName: env.project,
        environmentVariablesOverride: [
          { name: 'SOURCE_IMAGE', value: `${t.repository}@sha256:${digest}`, type: 'PLAINTEXT' },
          { name: 'TARGET_REPOSITORY', value: templateRepository(env, t.name), type: 'PLAINTEXT' },
        ],
      }),
    ).catch(async (e: Error) => {
      await records.setVariant(endpoint, { variant_claimed_at: null });
      throw new Error(`the build could not start (${e.name}: ${e.message})`);
    });
    if (!out.build?.id) throw new Error('CodeBuild started the build without naming it');
    await records.setVariant(endpoint, { variant_build: out.build.id });
    return waiting;
  };
}

async function describeBuild(codebuild: CodeBuildClient, id: string): Promise<Build | undefined> {
  const out = await codebuild.send(new BatchGetBuildsCommand({ ids: [id] }));
  return out.builds?.[0];
}

/** The failed phase's message (the command that failed), and where the build's logs say why. */
export function buildReason(b: Build): string {
  const failed = b.phases?.find((p) => p.phaseStatus && p.phaseStatus !== 'SUCCEEDED' && p.contexts?.some((c) => c.message));
  const message = failed?.contexts?.map((c) => c.message).filter(Boolean).join('; ');
  const logs = b.logs?.deepLink ? ` (logs: ${b.logs.deepLink})` : '';
  return `${message || `the build ended ${String(b.buildStatus).toLowerCase()}`}${logs}`;
}
