/**
 * Local mode rebuilds its function bundles only when something they are made of changed: the
 * same functions and baked values from inputs of the same size and modification time reuse
 * the last build; any recorded input that differs rebuilds. Real esbuild.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { parseConfig } from '#shared/config';
import { ensureBundles } from '#infra/local/lambda/bundles';
import { readCdkJson } from '#test-helpers/paths';

const dir = mkdtempSync(join(tmpdir(), 'bundles-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const config = parseConfig((readCdkJson() as { context: { dreambooth: unknown } }).context.dreambooth);

it('builds once, reuses the build while its inputs stay as they were, and rebuilds when one differs', async () => {
  expect(await ensureBundles(['authorizer'], dir, config)).toBe(true);
  const built = statSync(join(dir, 'authorizer.cjs')).mtimeMs;
  expect(await ensureBundles(['authorizer'], dir, config)).toBe(false);
  expect(statSync(join(dir, 'authorizer.cjs')).mtimeMs).toBe(built);

  // Another set of functions is another build.
  expect(await ensureBundles(['authorizer', 'notify'], dir, config)).toBe(true);
  expect(await ensureBundles(['authorizer', 'notify'], dir, config)).toBe(false);

  // An input whose recorded size no longer matches (as after an edit) rebuilds.
  const stampFile = join(dir, 'bundles.json');
  const stamp = JSON.parse(readFileSync(stampFile, 'utf8')) as { inputs: Record<string, [number, number]> };
  const handler = Object.keys(stamp.inputs).find((p) => p.endsWith('lambdas/authorizer/handler.ts'))!;
  expect(handler).toBeDefined();
  stamp.inputs[handler]![0] += 1;
  writeFileSync(stampFile, JSON.stringify(stamp));
  expect(await ensureBundles(['authorizer', 'notify'], dir, config)).toBe(true);
});
