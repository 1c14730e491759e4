/**
 * Two handler fixtures, one after the other, in one process (as `npm run bench` runs the staging
 * and SageMaker measurements): the second one's clients talk to its own servers, not to the
 * first one's stopped ones (the shared clients are memoised per container).
 */
import { describe, expect, it } from 'vitest';
import { newTraining, startFixture } from '#test-helpers/aws-local';

describe('handler fixtures in one process', () => {
  it('give each fixture clients of its own servers', async () => {
    const first = await startFixture({ as: 'stage-weights' });
    const a = await newTraining(first.deps);
    await first.stop();
    const second = await startFixture({ as: 'stage-weights' });
    try {
      const b = await newTraining(second.deps);
      expect(await second.deps.store.getTraining(b.id)).toMatchObject({ id: b.id });
      expect(await second.deps.store.getTraining(a.id)).toBeNull();
    } finally {
      await second.stop();
    }
  }, 60_000);
});
