/**
 * Local mode's CodeBuild refuses what StartBuild refuses before any build runs: an environment
 * variable past 4,096 characters. The state machine once passed a training's notes (up to
 * 10,000 characters) that way; they now go through S3 (test/e2e/local-mode.test.ts).
 */
import { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { CODEBUILD_VARIABLE_MAX_CHARS, runLocalBuild } from '#infra/local/codebuild/build-model';

const build = (vars: Record<string, string>) =>
  runLocalBuild(
    { EnvironmentVariablesOverride: Object.entries(vars).map(([Name, Value]) => ({ Name, Value, Type: 'PLAINTEXT' })) },
    // Nothing is reached: the refusal comes first.
    { strategy: 'append', registryHost: null, s3: new S3Client({ region: 'us-east-1' }), env: {}, log: () => undefined, limits: { maxEntries: 1, maxBytes: 1 } },
    new AbortController().signal,
  );

describe("local CodeBuild's environment overrides", () => {
  it('refuses a variable of more than 4,096 characters as CodeBuild does, naming it', async () => {
    const err = await build({ TRAINING_ID: 'limits0123456789abcd', NOTES: 'n'.repeat(10_000) }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err).toMatchObject({ name: 'CodeBuild.InvalidInputException', message: expect.stringMatching(/^EnvironmentVariable should be at most 4096 characters \(NOTES: 10005 /) });
  });

  it('counts the name with the value', async () => {
    const value = 'v'.repeat(CODEBUILD_VARIABLE_MAX_CHARS - 'NOTES'.length + 1);
    await expect(build({ NOTES: value })).rejects.toMatchObject({ name: 'CodeBuild.InvalidInputException' });
  });
});
