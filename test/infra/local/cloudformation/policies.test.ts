/** Each principal's policies as local mode reads them from the synthesized stack. */
import { describe, expect, it } from 'vitest';
import { evaluate } from '#infra/local/iam/policy';

const BUCKET_ARN = 'arn:aws:s3:::dreambooth-local';

describe('policies from the synthesized template', () => {
  it('resolves every resource of the services local mode serves to a local ARN', async () => {
    const { synthesize } = await import('#infra/local/cloudformation/synthesize');
    const { localPolicies } = await import('#infra/local/cloudformation/policies');
    const { testConfig } = await import('#test-helpers/aws-local');
    const policies = localPolicies(synthesize(testConfig()).stack);
    expect(Object.keys(policies)).toEqual(expect.arrayContaining(['api', 'stage-weights', 'start-trainer', 'state-machine', 'build']));
    const served = /^(s3|dynamodb|states|secretsmanager|lambda|codebuild):/;
    for (const [name, p] of Object.entries(policies)) {
      for (const s of p.statements) {
        if (![s.Action ?? []].flat().some((a) => served.test(a))) continue;
        for (const r of [s.Resource ?? []].flat()) expect(r, `${name}: ${JSON.stringify(s.Action)}`).toMatch(/^(\*|arn:aws:(s3|dynamodb|states|secretsmanager|lambda|codebuild):[^:]*:(000000000000)?:)/);
      }
    }
    expect(policies['stage-weights']!.statements).toContainEqual(
      expect.objectContaining({ Action: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'], Resource: `${BUCKET_ARN}/staged/*` }),
    );
  });

  it("lets only the preparation, the stage and build steps and the weights route read a SageMaker job's output, and no function but the preparation its request channel", async () => {
    const { synthesize } = await import('#infra/local/cloudformation/synthesize');
    const { localPolicies } = await import('#infra/local/cloudformation/policies');
    const { testConfig } = await import('#test-helpers/aws-local');
    const gpu = { backend: 'sagemaker', image: `127.0.0.1:5000/trainers/dreambooth@sha256:${'b'.repeat(64)}` };
    const policies = localPolicies(synthesize(testConfig({ trainers: { gpu } })).stack);
    const readers = (key: string) =>
      Object.entries(policies)
        .filter(([, p]) => evaluate(p.statements, { action: 's3:GetObject', resource: `${BUCKET_ARN}/${key}`, context: { 'aws:SecureTransport': 'true' } }) === 'Allow')
        .map(([name]) => name)
        .sort();
    const root = `sagemaker/${'a'.repeat(26)}`;
    expect(readers(`${root}/output/db-x-${'a'.repeat(26)}/output/model/output.zip`)).toEqual(['build', 'prepare-training-job', 'stage-weights', 'upload']);
    expect(readers(`${root}/request/request.json`)).toEqual(['prepare-training-job', 'sagemaker-job']);
  });
});
