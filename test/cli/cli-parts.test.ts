/** The command line's parts that need no server: settings discovery, the step parser, the zip stream. */
import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import yauzl from 'yauzl';
import { describe, expect, it } from 'vitest';
import { parseInputs } from '#cli/commands/train';
import { listImages, uploadName, zipFolder } from '#cli/images';
import { Out } from '#cli/output';
import { TtyReporter } from '#cli/progress';
import { resolveSettings, saveLogin } from '#cli/settings';
import { parseSteps } from '#cli/steps';
import { writeLocalAddress } from '#infra/local/address';
import { photoFolder } from '#test-helpers/photos';

const tmp = () => mkdtempSync(join(tmpdir(), 'dreambooth-cli-parts-'));

/** A data directory as a running local mode leaves it (this process stands in for its pid). */
function localDataDir(token: 'secrets.json' | 'DREAMBOOTH_API_TOKEN', pid = process.pid) {
  const dir = tmp();
  writeFileSync(join(dir, 'secrets.json'), JSON.stringify({ api_token: 'r8_local' }));
  writeLocalAddress(dir, { url: 'http://127.0.0.1:8787', pid, token });
  return dir;
}

describe('settings', () => {
  const noLogin = () => ({ DREAMBOOTH_CONFIG: join(tmp(), 'none.json') });

  it('finds a running local mode and its stored token with no settings', () => {
    const dir = localDataDir('secrets.json');
    expect(resolveSettings({}, { ...noLogin(), DREAMBOOTH_DATA_DIR: dir })).toMatchObject({ apiUrl: 'http://127.0.0.1:8787', token: 'r8_local' });
  });

  it('finds .dreambooth/ in a parent directory', () => {
    const root = tmp();
    const dir = join(root, '.dreambooth');
    mkdirSync(dir);
    writeFileSync(join(dir, 'secrets.json'), JSON.stringify({ api_token: 'r8_parent' }));
    writeLocalAddress(dir, { url: 'http://127.0.0.1:9999', pid: process.pid, token: 'secrets.json' });
    mkdirSync(join(root, 'a', 'b'), { recursive: true });
    expect(resolveSettings({}, noLogin(), join(root, 'a', 'b')).token).toBe('r8_parent');
  });

  it('ignores the file of a local mode that is gone', () => {
    const dir = localDataDir('secrets.json', 2 ** 22 + 12345);
    expect(() => resolveSettings({}, { ...noLogin(), DREAMBOOTH_DATA_DIR: dir })).toThrow(/no API to talk to/);
  });

  it('says to set the token when local mode was started with DREAMBOOTH_API_TOKEN', () => {
    const dir = localDataDir('DREAMBOOTH_API_TOKEN');
    expect(() => resolveSettings({}, { ...noLogin(), DREAMBOOTH_DATA_DIR: dir })).toThrow(/started with DREAMBOOTH_API_TOKEN/);
    expect(resolveSettings({}, { ...noLogin(), DREAMBOOTH_DATA_DIR: dir, DREAMBOOTH_API_TOKEN: 'mine' }).token).toBe('mine');
  });

  it('prefers flags, then the environment, then the login file, then local mode; tokens go with their URL', () => {
    const dir = localDataDir('secrets.json');
    const config = join(tmp(), 'c', 'config.json');
    const base = { DREAMBOOTH_CONFIG: config, DREAMBOOTH_DATA_DIR: dir };
    saveLogin({ api_url: 'https://api.example.com', token: 'saved' }, base);
    expect(statSync(config).mode & 0o777).toBe(0o600);
    expect(resolveSettings({}, base)).toMatchObject({ apiUrl: 'https://api.example.com', token: 'saved' });
    expect(resolveSettings({}, { ...base, DREAMBOOTH_API_URL: 'http://127.0.0.1:8787/' })).toMatchObject({ apiUrl: 'http://127.0.0.1:8787', token: 'r8_local' });
    expect(resolveSettings({ api: 'https://other.example.com', token: 't' }, base)).toMatchObject({ apiUrl: 'https://other.example.com', token: 't' });
    // The saved token is not sent to another API.
    expect(() => resolveSettings({ api: 'https://other.example.com' }, base)).toThrow(/no API token for https:\/\/other\.example\.com/);
  });
});

describe('steps from logs', () => {
  it.each([
    ['Downloading instance_data\nSteps: 10/30 loss=0.06\nSteps: 20/30 loss=0.04\n', { done: 20, total: 30 }],
    ['step 5/100\nstep 6/100', { done: 6, total: 100 }],
    ['Steps:  45%|████▌     | 900/2000 [01:02<01:15, 14.4it/s, loss=0.1]\rSteps:  45%|████▌     | 901/2000 [01:02<01:15]', { done: 901, total: 2000 }],
    ['no progress yet', null],
    ['Steps: 31/30', null],
  ])('%j', (logs, want) => expect(parseSteps(logs)).toEqual(want));
});

describe('inputs', () => {
  it('types numbers and booleans and keeps the rest as text', () => {
    expect(parseInputs(['max_train_steps=30', 'train_text_encoder=false', 'instance_prompt=a photo of a cjw person', 'seed=007x', 'x=a=b'])).toEqual({
      max_train_steps: 30,
      train_text_encoder: false,
      instance_prompt: 'a photo of a cjw person',
      seed: '007x',
      x: 'a=b',
    });
    expect(() => parseInputs(['novalue'])).toThrow(/use -i key=value/);
  });
});

describe('the folder zip', () => {
  it('streams exactly the size it announced, with every photo and nothing hidden', async () => {
    const dir = photoFolder(join(tmp(), 'My Photos'), 3);
    mkdirSync(join(dir, 'more'));
    writeFileSync(join(dir, 'more', 'x.JPG'), Buffer.alloc(5000, 7));
    writeFileSync(join(dir, '.DS_Store'), 'finder');
    const archive = zipFolder(dir);
    expect(archive.name).toBe('My-Photos.zip');
    expect(archive.images).toBe(4);
    const chunks: Buffer[] = [];
    for await (const c of archive.stream) chunks.push(c as Buffer);
    const zip = Buffer.concat(chunks);
    expect(zip.length).toBe(archive.size);
    const names = await new Promise<string[]>((resolve, reject) =>
      yauzl.fromBuffer(zip, { lazyEntries: true }, (err, z) => {
        if (err) return reject(err);
        const out: string[] = [];
        z.on('entry', (e: yauzl.Entry) => (out.push(e.fileName), z.readEntry()));
        z.on('end', () => resolve(out));
        z.readEntry();
      }),
    );
    expect(names.sort()).toEqual(['more/x.JPG', 'photo-1.png', 'photo-2.png', 'photo-3.png']);
  });

  it('refuses other files and empty folders, naming what it found', () => {
    const dir = photoFolder(join(tmp(), 'p'), 1, { 'a.txt': 'x', 'b.heic': 'y' });
    expect(() => listImages(dir)).toThrow(/not photos: a\.txt, b\.heic/);
    const empty = tmp();
    expect(() => listImages(empty)).toThrow(/holds no photos/);
    expect(uploadName('/x/../ünïcode pics')).toBe('n-code-pics.zip');
  });
});

describe('the terminal reporter', () => {
  /** A stream that says it is a terminal and keeps what is written to it. */
  function fakeTerminal() {
    const stream = new PassThrough() as PassThrough & NodeJS.WriteStream;
    Object.assign(stream, { isTTY: true, columns: 120, rows: 40, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
    let text = '';
    stream.on('data', (c: Buffer) => (text += c));
    return { stream, text: () => text };
  }
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

  it('draws nothing and leaves no timer after done(), even when resumed late (a question answered as the training ended)', async () => {
    const term = fakeTerminal();
    const before = timers();
    const reporter = new TtyReporter(new Out(term.stream, term.stream));
    reporter.phase('processing');
    expect(timers()).toBeGreaterThan(before);
    reporter.pause();
    reporter.done('canceled');
    const drawn = term.text().length;
    reporter.resume();
    await new Promise((r) => setTimeout(r, 250));
    expect(term.text().length).toBe(drawn);
    expect(timers()).toBeLessThanOrEqual(before);
  });
});
