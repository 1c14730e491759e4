/**
 * The configuration schema refuses, with the key named, what AWS would refuse at deploy or at
 * the first training: names outside ECR's repository-name pattern, spot with a warm pool.
 */
import { describe, expect, it } from 'vitest';
import { mergeConfig, parseConfig, TRAINER_NAME_MAX } from '#shared/config';
import { ECR_REPOSITORY_NAME, ecrRepositoryNameProblem } from '#shared/ids';
import { synthesizeDefinition } from '#infra/local/cloudformation/synthesize';
import { readCdkJson } from '#test-helpers/paths';

const cdkJson = readCdkJson();
const shipped = cdkJson.context.dreambooth;
const IMAGE = `r8.im/replicate/dreambooth@sha256:${'c'.repeat(64)}`;
const GPU = { backend: 'sagemaker', image: IMAGE };
const withConfig = (over: unknown) => parseConfig(mergeConfig(shipped, over));
const refusal = (over: unknown): string => {
  try {
    withConfig(over);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('the configuration was accepted');
};

describe('names that end up in ECR repository names', () => {
  it.each(['gpu-', 'a--b', 'a__b', 'a..b', '-gpu', 'GPU'])('refuses the trainer name %j, naming the key', (bad) => {
    expect(refusal({ trainers: { [bad]: GPU } })).toMatch(new RegExp(`dreambooth\\.trainers\\.${bad.replace(/[.]/g, '\\.')}.*single "\\.", "_" or "-"`));
  });

  it('refuses such names as owners and trainer names shown by the API, and as the registry prefix', () => {
    expect(refusal({ default_owner: 'acme-' })).toMatch(/dreambooth\.default_owner: use lowercase letters/);
    expect(refusal({ trainers: { demo: { owner: 'acme__x' } } })).toMatch(/dreambooth\.trainers\.demo\.owner: use lowercase letters/);
    expect(refusal({ trainers: { demo: { name: 'demo-' } } })).toMatch(/dreambooth\.trainers\.demo\.name: use lowercase letters/);
    expect(refusal({ registry: { type: 'ecr', repository_prefix: 'team//models' } })).toMatch(/dreambooth\.registry\.repository_prefix: must be "\/"-separated parts/);
    expect(refusal({ registry: { type: 'ecr', repository_prefix: 'team-/models' } })).toMatch(/dreambooth\.registry\.repository_prefix/);
  });

  it('accepts names ECR accepts', () => {
    const config = withConfig({ registry: { type: 'ecr', repository_prefix: 'team.a/models_1/' }, trainers: { 'gpu-1.a_b': GPU } });
    expect(Object.keys(config.trainers)).toContain('gpu-1.a_b');
    expect(ecrRepositoryNameProblem('team.a/models_1/acme/gpu-1.a_b')).toBeNull();
  });

  it('the pattern is ECR’s: components of lowercase letters and digits, one separator between them', () => {
    for (const ok of ['ab', 'a/b', 'a.b/c_d/e-f', 'dreambooth/acme/cjw']) expect(ECR_REPOSITORY_NAME.test(ok), ok).toBe(true);
    for (const bad of ['acme/cjw-', 'a__b', 'a..b', 'a//b', '/a', 'a/', 'A', 'a b']) expect(ECR_REPOSITORY_NAME.test(bad), bad).toBe(false);
    expect(ecrRepositoryNameProblem('a')).toMatch(/2 to 256/);
    expect(ecrRepositoryNameProblem('a'.repeat(257))).toMatch(/2 to 256/);
  });

  it(`keeps every state name within Step Functions' 80 characters with a ${TRAINER_NAME_MAX}-character trainer name`, () => {
    const longest = 'g'.repeat(TRAINER_NAME_MAX);
    const { asl } = synthesizeDefinition(withConfig({ trainers: { [longest]: GPU } }));
    const names = Object.keys(asl.States);
    expect(names.some((n) => n.includes(longest))).toBe(true);
    expect(names.filter((n) => n.length > 80)).toEqual([]);
    expect(refusal({ trainers: { [`${longest}g`]: GPU } })).toMatch(new RegExp(`trainers\\.${longest}g: at most ${TRAINER_NAME_MAX} characters`));
  });
});

describe('a sagemaker trainer', () => {
  it('refuses spot together with a warm pool, naming both keys', () => {
    const message = refusal({ trainers: { gpu: { ...GPU, spot: true, max_wait_seconds: 20_000, keep_alive_seconds: 600 } } });
    expect(message).toMatch(/dreambooth\.trainers\.gpu\.keep_alive_seconds: SageMaker warm pools cannot be used with spot instances: set spot to false or keep_alive_seconds to 0/);
  });

  it('accepts either alone', () => {
    expect(() => withConfig({ trainers: { gpu: { ...GPU, spot: true, max_wait_seconds: 20_000 } } })).not.toThrow();
    expect(() => withConfig({ trainers: { gpu: { ...GPU, keep_alive_seconds: 600 } } })).not.toThrow();
  });
});
