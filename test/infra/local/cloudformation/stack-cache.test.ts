/** The synthesized stack local mode keeps between starts: reused while its inputs hold, synthesized again when one differs. */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { localStack, STACK_CACHE, stackKey } from '#infra/local/cloudformation/stack-cache';
import { stateMachinesOf } from '#infra/local/cloudformation/state-machine';
import { synthesize } from '#infra/local/cloudformation/synthesize';
import { testConfig } from '#test-helpers/aws-local';

/** A stand-in repository: a source, a test, a doc, the dependencies' lock, and a data directory inside it. */
function fakeRepo(): { root: string; dataDir: string } {
  const root = mkdtempSync(join(tmpdir(), 'stack-cache-'));
  const files = ['infra/stack.ts', 'buildspecs/append.yml', 'test/a.test.ts', 'docs/a.md', 'node_modules/.package-lock.json', 'data/service.log', '.git/HEAD'];
  for (const f of files) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), 'one');
  }
  return { root, dataDir: join(root, 'data') };
}

const repos: string[] = [];
afterAll(() => {
  for (const r of repos) rmSync(r, { recursive: true, force: true });
});

describe('the stack cache', () => {
  it('is reused while the configuration and the sources are the same, and synthesized again when one differs', async () => {
    const { root, dataDir } = fakeRepo();
    repos.push(root);
    const config = testConfig();
    const first = await localStack(config, dataDir, root);
    expect(first.cached).toBe(false);
    const again = await localStack(config, dataDir, root);
    expect(again.cached).toBe(true);
    // What is read back is what a synthesis gives, the state machines' paths (hence ARNs) included.
    const fresh = synthesize(config);
    expect(again.stack.template).toEqual(fresh.template);
    expect(stateMachinesOf(again.stack).map((m) => m.arn)).toEqual(stateMachinesOf(fresh).map((m) => m.arn));

    writeFileSync(join(root, 'infra/stack.ts'), 'two');
    expect((await localStack(config, dataDir, root)).cached).toBe(false);
    expect((await localStack(config, dataDir, root)).cached).toBe(true);
    const other = testConfig({ limits: { page_size: 7 } });
    expect((await localStack(other, dataDir, root)).cached).toBe(false);
    expect(JSON.parse(readFileSync(join(dataDir, STACK_CACHE), 'utf8')).stack.template).toEqual(synthesize(other).template);
  });

  it("changes its key with any source, a new file or the dependencies' lock, and not with tests, docs, dot-directories or the data directory", () => {
    const { root, dataDir } = fakeRepo();
    repos.push(root);
    const config = testConfig();
    const key = () => stackKey(config, dataDir, root);
    const base = key();
    expect(key()).toBe(base);
    for (const f of ['test/a.test.ts', 'docs/a.md', 'data/service.log', '.git/HEAD']) writeFileSync(join(root, f), 'changed');
    expect(key()).toBe(base);

    const keys = new Set([base]);
    const differs = (what: string) => {
      const k = key();
      expect(keys.has(k), what).toBe(false);
      keys.add(k);
    };
    // The same size: its modification time tells.
    writeFileSync(join(root, 'buildspecs/append.yml'), 'two');
    utimesSync(join(root, 'buildspecs/append.yml'), new Date(), new Date(Date.now() + 5000));
    differs('an edited source');
    writeFileSync(join(root, 'infra/new.ts'), '');
    differs('a new source');
    writeFileSync(join(root, 'node_modules/.package-lock.json'), 'an install');
    differs("the dependencies' lock");
    expect(stackKey(testConfig({ limits: { page_size: 7 } }), dataDir, root)).not.toBe(key());
  });
});
