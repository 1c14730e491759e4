/**
 * The `dreambooth` command end to end against local mode, run as a person runs it: the bin
 * (plain node + tsx) in its own process, without a terminal (pipes) and inside a real
 * pseudo-terminal (`script` from util-linux).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import yazl from 'yazl';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { localModeImages } from '#test-helpers/capabilities';
import { startLocal, waitFor, type Local } from '#test-helpers/local-mode';
import { photoFolder } from '#test-helpers/photos';

const BIN = resolve('bin/dreambooth.mjs');
// 20 steps a second, a log line every 20 steps: 100 steps take five seconds.
const CONFIG = { trainers: { demo: { backend: 'demo', steps_per_second: 20 } } };
const PROMPTS = ['-i', 'instance_prompt=a photo of a cjw person', '-i', 'class_prompt=a photo of a person'];
const ANSI = /\x1b\[/;

let local: Local;
let work: string;
/** The training the first test made (acme/cjw), for the commands that read it. */
let trained: { id: string; version: string } | undefined;
beforeAll(async () => {
  local = await startLocal({ config: CONFIG, registry: process.env.DREAMBOOTH_TEST_REGISTRY });
  work = mkdtempSync(join(tmpdir(), 'dreambooth-cli-'));
});
afterAll(() => local?.stop());
/** A command a failed test left running is stopped with it (under `script`, the hangup ends the command). */
const running = new Set<ChildProcess>();
afterEach(() => {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  running.clear();
});

/** No settings but what local mode left in its data directory (and the token it was given). */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, DREAMBOOTH_DATA_DIR: local.dataDir, DREAMBOOTH_API_TOKEN: local.token };
  for (const k of ['DREAMBOOTH_API_URL', 'FORCE_COLOR', 'NO_COLOR']) delete e[k];
  e.DREAMBOOTH_CONFIG = join(work, 'no-login.json');
  return { ...e, ...extra };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], e = env()): { proc: ChildProcess; done: Promise<Run>; output: () => string } {
  const proc = spawn(process.execPath, [BIN, ...args], { env: e, cwd: work, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (c: Buffer) => (stdout += c));
  proc.stderr!.on('data', (c: Buffer) => (stderr += c));
  const done = new Promise<Run>((r) => proc.on('close', (code) => r({ code, stdout, stderr })));
  running.add(proc);
  return { proc, done, output: () => stdout + stderr };
}

async function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Run> {
  const run = start(args, opts.env);
  run.proc.stdin!.end(opts.input ?? '');
  return run.done;
}

/** The upload helper's log lines so far (service.log appears with the first line). */
const uploads = () => {
  const log = join(local.dataDir, 'service.log');
  return existsSync(log) ? (readFileSync(log, 'utf8').match(/upload URLs issued/g) ?? []).length : 0;
};
const training = async (id: string) => (await local.api('GET', `/v1/trainings/${id}`)).json;

async function zipOf(files: Record<string, string>): Promise<string> {
  const zip = new yazl.ZipFile();
  for (const [name, text] of Object.entries(files)) zip.addBuffer(Buffer.from(text), name);
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  const path = join(work, `zip-${Object.keys(files).join('-')}.zip`);
  writeFileSync(path, Buffer.concat(chunks));
  return path;
}

// Each test waits up to a minute for a phase (a loaded CI machine is slow); the test's own budget is larger.
describe('dreambooth train', { timeout: 150_000 }, () => {
  it('trains a folder of three PNGs to a version and exits 0, one plain line per change without a terminal', async () => {
    const photos = photoFolder(join(work, 'photos'), 3);
    const before = uploads();
    const run = await cli(['train', photos, '--model', 'acme/cjw', ...PROMPTS, '-i', 'max_train_steps=100']);
    expect(run.stderr).not.toMatch(/error/);
    expect(run.code).toBe(0);
    const version = run.stdout.match(/^Version {2}([0-9a-f]{64})$/m)?.[1];
    expect(version).toBeDefined();
    const image = run.stdout.match(/^Image {4}(\S+)$/m)?.[1];
    if (localModeImages() === 'registry') {
      expect(image).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+/acme/cjw@sha256:${version}$`));
      expect(run.stdout).toContain(`docker run --gpus all -p 5000:5000 ${image}`);
    } else {
      // An OCI layout on disk: the command says how to load it into docker, then run that name.
      const loaded = `acme/cjw:${version!.slice(0, 12)}`;
      expect(run.stdout).toContain(`skopeo copy ${image} docker-daemon:${loaded}`);
      expect(run.stdout).toContain(`docker run --gpus all -p 5000:5000 ${loaded}`);
    }
    expect(run.stdout).toMatch(/curl -s http:\/\/localhost:5000\/predictions .*a photo of a cjw person/);
    // The API agrees: the training the command made pushed exactly that version and image.
    const id = run.stderr.match(/Training ([a-z0-9]+): acme\/cjw with trainer demo/)![1]!;
    const t = await training(id);
    expect(t).toMatchObject({ status: 'succeeded', version, model: 'acme/cjw' });
    expect(t.input).toMatchObject({ instance_prompt: 'a photo of a cjw person', max_train_steps: 100 });
    expect((await local.api('GET', `/v1/models/acme/cjw/versions/${version}`)).json.image).toBe(image);
    expect(uploads()).toBe(before + 1);
    trained = { id, version: version! };
    // No terminal: no colours, no redraws; timestamped lines for the phases and the steps.
    expect(run.stderr).not.toMatch(ANSI);
    expect(run.stderr).not.toContain('\r');
    expect(run.stderr).toMatch(/Uploading 3 photos as photos\.zip/);
    const lines = run.stderr.split('\n').filter((l) => /^\[\d+:\d\d\] /.test(l));
    expect(lines[0]).toMatch(/\] starting$/);
    expect(lines).toContainEqual(expect.stringMatching(/\] processing$/));
    expect(lines).toContainEqual(expect.stringMatching(/\] processing: step \d+\/100 \(\d+%\)$/));
    // The last count arrives with the phase after processing, and still closes its line.
    expect(lines).toContainEqual(expect.stringMatching(/\] processing: step 100\/100 \(100%\)$/));
    expect(lines[lines.length - 1]).toMatch(/\] succeeded$/);
    expect(new Set(lines).size).toBe(lines.length);
  });

  it('retemplate makes a new version from a succeeded training, without training again', async () => {
    const run = await cli(['retemplate', trained!.id, '--template', 'vanilla-template', '--notes', 'again']);
    expect(run.code).toBe(0);
    const version = run.stdout.match(/^Version {2}([0-9a-f]{64})$/m)![1]!;
    expect(version).not.toBe(trained!.version);
    expect(run.stderr).toMatch(/\] pushing\n/);
    expect(run.stderr).not.toMatch(/processing/);
    const versions = await cli(['versions', 'acme/cjw', '--json']);
    expect(JSON.parse(versions.stdout)[0]).toMatchObject({ id: version, notes: 'again' });
  });

  it('run saves the version\'s pictures to files and prints their paths; a refused input exits 1 naming the field', async () => {
    const out = join(work, 'pictures');
    const run = await cli(['run', `acme/cjw:${trained!.version}`, '-i', 'prompt=a photo of a cjw person on the moon', '-i', 'num_outputs=2', '-o', out]);
    expect(run.stderr).not.toMatch(/error/i);
    expect(run.code).toBe(0);
    const paths = run.stdout.trim().split('\n');
    expect(paths).toHaveLength(2);
    for (const path of paths) {
      expect(path.startsWith(out)).toBe(true);
      expect(readFileSync(path).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    }
    const refused = await cli(['run', `acme/cjw:${trained!.version}`, '-i', 'prompt=x', '-i', 'num_outputs=99']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('num_outputs');
  });

  it('refuses a folder holding a .txt before any upload, naming the file', async () => {
    const photos = photoFolder(join(work, 'with-notes'), 2, { 'notes.txt': 'not a photo' });
    const before = uploads();
    const run = await cli(['train', photos, '--model', 'acme/cjw', ...PROMPTS]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/error: .*with-notes holds files that are not photos: notes\.txt/);
    expect(run.stdout).toBe('');
    expect(uploads()).toBe(before);
  });

  it('exits 1 with the training error when the training fails', async () => {
    // A .zip is sent as is: one without images makes the trainer fail.
    const zip = await zipOf({ 'readme.txt': 'no photos in here' });
    const run = await cli(['train', zip, '--model', 'acme/cjw', ...PROMPTS]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/error: training [a-z0-9]+ failed: .*instance_data holds no images/);
    expect(run.stdout).not.toMatch(/Version/);
  });

  it('--no-wait --json prints the training, and logs --follow ends when the training ends', async () => {
    const photos = photoFolder(join(work, 'photos-logs'), 1);
    const created = await cli(['train', photos, '--model', 'acme/logs', ...PROMPTS, '-i', 'max_train_steps=60', '--no-wait', '--json']);
    expect(created.code).toBe(0);
    const { id, status } = JSON.parse(created.stdout);
    expect(status).toBe('starting');
    const run = await cli(['logs', id, '--follow']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Steps: 60\/60/);
    expect(run.stderr).toContain(`training ${id} succeeded`);
    expect((await training(id)).status).toBe('succeeded');
  });

  it('leaves the training running on Ctrl-C when there is no terminal to ask on (exit 130)', async () => {
    const photos = photoFolder(join(work, 'photos-leave'), 1);
    const run = start(['train', photos, '--model', 'acme/leave', ...PROMPTS, '-i', 'max_train_steps=2000']);
    await waitFor('processing', async () => /processing/.test(run.output()), 60_000);
    run.proc.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    const id = r.stderr.match(/left training ([a-z0-9]+) running: `dreambooth logs \1 --follow` to watch, `dreambooth cancel \1` to stop it/)?.[1];
    expect(id).toBeDefined();
    expect((await training(id!)).status).toBe('processing');
    const canceled = await cli(['cancel', id!]);
    expect(canceled.stdout).toBe(`training ${id} canceled\n`);
    expect((await training(id!)).status).toBe('canceled');
  });

  it('cancels on Ctrl-C with --cancel-on-interrupt and exits 1', async () => {
    const photos = photoFolder(join(work, 'photos-int'), 1);
    const run = start(['train', photos, '--model', 'acme/int', ...PROMPTS, '-i', 'max_train_steps=2000', '--cancel-on-interrupt']);
    await waitFor('processing', async () => /processing/.test(run.output()), 60_000);
    run.proc.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/canceling training ([a-z0-9]+)/);
    const id = r.stderr.match(/canceling training ([a-z0-9]+)/)![1]!;
    expect(r.stderr).toContain(`error: training ${id} canceled`);
    expect((await training(id)).status).toBe('canceled');
  });
});

/** The command inside a pseudo-terminal: `script` gives it a tty on stdin, stdout and stderr. */
function inTerminal(args: string[]) {
  const quoted = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  // script(1) runs the command through $SHELL -c. `exec` makes the command the terminal's only
  // process: dash (/bin/sh, script's choice where SHELL is unset) would otherwise wait for it,
  // take the Ctrl-C's SIGINT too, and exit 130 whatever the command returned. SHELL is pinned
  // to that case so the test behaves the same wherever it runs.
  const proc = spawn('script', ['-qfec', `exec ${quoted}`, '/dev/null'], {
    env: { ...env(), SHELL: '/bin/sh', COLUMNS: '120', LINES: '40', TERM: 'xterm' },
    cwd: work,
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c));
  proc.stderr.on('data', (c: Buffer) => (out += c));
  const done = new Promise<number | null>((r) => proc.on('close', r));
  running.add(proc);
  return { proc, done, output: () => out };
}

// util-linux's `script` (Debian's bsdutils, always installed) makes the pseudo-terminal.
const hasScript = spawnSync('script', ['--version']).status === 0;
if (!hasScript && process.env.CI) throw new Error('CI needs util-linux script(1) for the terminal tests of the command line');
if (!hasScript) console.warn('skipping the terminal tests of the command line: script(1) from util-linux is not installed');

describe.skipIf(!hasScript)('dreambooth train in a terminal', { timeout: 150_000 }, () => {
  it('draws the phases and a step bar with colours, then the version', async () => {
    const photos = photoFolder(join(work, 'photos-tty'), 3);
    const run = inTerminal(['train', photos, '--model', 'acme/tty', ...PROMPTS, '-i', 'max_train_steps=100']);
    expect(await run.done, run.output()).toBe(0);
    const out = run.output();
    expect(out).toMatch(ANSI);
    // The upload bar, then each phase's live line redrawn in place (carriage return + clear).
    expect(out).toMatch(/upload █+ 100%/);
    expect(out).toMatch(/processing\x1b\[39m [█░]{30} \d+\/100 steps {2}0:0\d/);
    expect(out).toMatch(/\x1b\[1G.*processing/);
    expect(out).toMatch(/✔\x1b\[39m starting/);
    expect(out).toMatch(/✔\x1b\[39m \x1b\[36mprocessing\x1b\[39m █{30} 100\/100 steps/);
    expect(out).toMatch(/Version {2}[0-9a-f]{64}/);
  });

  it('asks on Ctrl-C whether to cancel; "y" cancels and exits 1', async () => {
    const photos = photoFolder(join(work, 'photos-ask'), 1);
    const run = inTerminal(['train', photos, '--model', 'acme/ask', ...PROMPTS, '-i', 'max_train_steps=2000']);
    await waitFor('the step bar', async () => /\/2000 steps/.test(run.output()), 60_000);
    run.proc.stdin.write('\x03'); // Ctrl-C, turned into SIGINT by the terminal
    await waitFor('the question', async () => /Cancel training [a-z0-9]+\? \[y\/N\]/.test(run.output()), 10_000);
    run.proc.stdin.write('y\r');
    // The terminal's transcript goes with a failure: it shows which way the command went.
    expect(await run.done, run.output()).toBe(1);
    const id = run.output().match(/Cancel training ([a-z0-9]+)\?/)![1]!;
    expect(run.output()).toContain(`training ${id} canceled`);
    expect((await training(id)).status).toBe('canceled');
  });
});

describe('settings and errors', () => {
  it('login keeps the URL and token in a 0600 file that later commands use', async () => {
    const config = join(work, 'login', 'config.json');
    const bare: NodeJS.ProcessEnv = { ...env(), DREAMBOOTH_CONFIG: config, DREAMBOOTH_DATA_DIR: join(work, 'no-local-mode') };
    delete bare.DREAMBOOTH_API_TOKEN;
    const refused = await cli(['login', '--api', local.url], { env: bare, input: 'wrong-token\n' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/HTTP 401/);
    const run = await cli(['login', '--api', local.url], { env: bare, input: `${local.token}\n` });
    expect(run.code).toBe(0);
    expect(statSync(config).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(config, 'utf8'))).toEqual({ api_url: local.url, token: local.token });
    const trainers = await cli(['trainers', '--json'], { env: bare });
    expect(trainers.code).toBe(0);
    expect(JSON.parse(trainers.stdout).map((t: { key: string }) => t.key)).toEqual(['demo']);
  });

  it('finds local mode with no settings and prints tables', async () => {
    const run = await cli(['list']);
    expect(run.code).toBe(0);
    expect(run.stdout.split('\n')[0]).toMatch(/^ID +MODEL +STATUS +CREATED +VERSION$/);
    expect(run.stdout).toMatch(/acme\/cjw +succeeded/);
    const versions = await cli(['versions', 'acme/cjw']);
    expect(versions.stdout).toMatch(/^[0-9a-f]{12} /m);
    const one = await cli(['versions', 'acme/cjw', '--limit', '1', '--json']);
    expect(JSON.parse(one.stdout)).toHaveLength(1);
    expect((await cli(['versions', 'acme/cjw', '--limit', '0'])).stderr).toMatch(/--limit: a whole number of versions, at least 1/);
    // Each trainer's slots in use of its capacity, and how many wait (none: nothing runs now).
    const trainers = await cli(['trainers']);
    expect(trainers.stdout.split('\n')[0]).toMatch(/^KEY +MODEL +VERSION +BACKEND +BUSY +QUEUED +DESCRIPTION$/);
    expect(trainers.stdout).toMatch(/^demo +\S+ +\S+ +demo +0\/1 +0 /m);
  });

  it("prints an API error's detail and names the URL it could not reach", async () => {
    const missing = await cli(['get', 'a'.repeat(26)]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`error: training ${'a'.repeat(26)} not found (HTTP 404)\n`);
    const port = await freePort();
    const down = await cli(['list', '--api', `http://127.0.0.1:${port}`, '--token', 't']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(new RegExp(`error: could not reach http://127\\.0\\.0\\.1:${port}/v1/trainings: ECONNREFUSED`));
  });
});

function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => r(port));
    });
  });
}

describe('when local mode stops', () => {
  it('removes its address file, and the command says there is no API', async () => {
    const address = JSON.parse(readFileSync(join(local.dataDir, 'local-mode.json'), 'utf8'));
    expect(address).toEqual({ url: local.url, pid: local.proc.pid, token: 'DREAMBOOTH_API_TOKEN' });
    expect(await local.stop()).toBe(143);
    expect(existsSync(join(local.dataDir, 'local-mode.json'))).toBe(false);
    const run = await cli(['list']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/error: no API to talk to: .*start local mode/);
  });
});
