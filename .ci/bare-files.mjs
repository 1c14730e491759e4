// The test files a bare machine runs differently: those under test/e2e, test/faults and
// test/infra/local (local mode and its stand-ins, which look for Debian's docker-registry and a
// docker engine and fall back without them), and every test file that imports, directly or
// not, a test helper that looks at the machine (capabilities.ts and the helpers that probe
// DOCKER_HOST, DREAMBOOTH_TEST_REGISTRY or CI). .ci/run runs these a second time with those
// services absent; the rest behave the same either way and run once, in the full run. Found by
// esbuild's import graph, so a new test is classified without a list to keep.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const DIRS = /^test\/(e2e|faults|infra\/local)\//;
const LOOKS = /\b(requireRegistry|requireDocker|localModeImages)\(|DREAMBOOTH_TEST_REGISTRY|DOCKER_HOST|process\.env\.CI\b|startLocal\(/;
const code = (path) => readFileSync(path, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');

const tests = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tests(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : []));

const files = tests('test').sort();
const { metafile } = await build({ entryPoints: files, bundle: true, write: false, metafile: true, platform: 'node', format: 'esm', packages: 'external', outdir: 'ci-unused', logLevel: 'silent' });
// Test-side modules only: what local mode itself probes is reached through the directories above.
const imports = new Map(Object.entries(metafile.inputs).filter(([path]) => path.startsWith('test/')).map(([path, input]) => [path, input.imports.map((i) => i.path)]));
const sensitive = new Set([...imports.keys()].filter((path) => DIRS.test(path) || LOOKS.test(code(path))));
// Imports of a sensitive module are sensitive, to a fixed point (cycles included).
for (let grew = true; grew; ) {
  grew = false;
  for (const [path, next] of imports) {
    if (!sensitive.has(path) && next.some((n) => sensitive.has(n))) grew = Boolean(sensitive.add(path));
  }
}
const bare = files.filter((f) => sensitive.has(f));
if (process.argv.includes('--summary')) console.error(`${bare.length} of ${files.length} test files look at the machine`);
console.log(bare.join('\n'));
