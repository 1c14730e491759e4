import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Vitest's default is one worker fewer than the cores: one at a time on a 2-core machine.
    // Most files wait on servers, trainers and containers rather than compute, so two at once
    // keep the suite well inside CI's budget.
    maxWorkers: 2,
    // cfn-lint over every template an infra test synthesizes (test/helpers/cfn-lint-setup.ts),
    // each distinct one once a run (test/helpers/cfn-lint.ts).
    setupFiles: ['test/helpers/cfn-lint-setup.ts'],
    globalSetup: ['test/helpers/cfn-lint.ts'],
  },
});
