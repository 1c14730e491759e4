/**
 * A real registry for tests: Debian's docker-registry (distribution 2.8) on a free loopback
 * port with its storage in a temp dir. With `{ auth: 'token' }` it runs distribution's token
 * auth against a small token server started here (Basic credentials in, ES256 JWT out), so the
 * client's Bearer exchange meets the real registry's checks.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID, sign, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, REGISTRY_BIN } from '#infra/local/ecr';
import { requireRegistry } from './capabilities.ts';

export { REGISTRY_BIN };

export interface TestRegistry {
  url: string;
  /** `127.0.0.1:<port>`, as in image references. */
  host: string;
  /** Token requests seen (token mode): the scopes asked for, and whether the credentials were right. */
  tokenRequests: { scopes: string[]; authorized: boolean }[];
  stop(): Promise<void>;
}

export interface RegistryOptions {
  auth?: { username: string; password: string };
}

/** True when tests can run a registry (the decision is requireRegistry's: skip with a reason, or fail in CI). */
export function registryAvailable(skipped = 'registry tests'): boolean {
  return !requireRegistry(skipped).skip;
}

export const opensslAvailable = () => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'registry-'));
  const port = await freePort();
  const tokenRequests: TestRegistry['tokenRequests'] = [];
  const lines = [
    'version: 0.1',
    'log: { level: error, accesslog: { disabled: true } }',
    `storage: { filesystem: { rootdirectory: ${JSON.stringify(join(dir, 'data'))} }, delete: { enabled: true } }`,
    `http: { addr: "127.0.0.1:${port}" }`,
  ];
  const token = opts.auth ? await startTokenServer(dir, opts.auth, tokenRequests) : undefined;
  if (token) lines.push(`auth: { token: ${JSON.stringify(token.settings)} }`);
  const config = join(dir, 'config.yml');
  await writeFile(config, lines.join('\n') + '\n');

  const child = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    await new Promise((r) => (token ? token.server.close(r) : r(undefined)));
    await rm(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForRegistry(url, () => child.exitCode !== null, () => stderr);
  } catch (e) {
    await stop();
    throw e;
  }
  return { url, host: `127.0.0.1:${port}`, tokenRequests, stop };
}

async function waitForRegistry(url: string, dead: () => boolean, stderr: () => string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (dead()) throw new Error(`docker-registry exited: ${stderr().trim()}`);
    const status = await fetch(`${url}/v2/`).then((r) => r.status, () => 0);
    // 401 = up, and asking for a token as configured.
    if (status === 200 || status === 401) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer on ${url}: ${stderr().trim()}`);
}

export { freePort };

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** A token server as distribution expects one: JWTs signed by a key whose certificate the registry trusts. */
async function startTokenServer(dir: string, auth: { username: string; password: string }, seen: TestRegistry['tokenRequests']) {
  const keyPath = join(dir, 'token.key');
  const certPath = join(dir, 'token.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=test-token-issuer'], { stdio: 'ignore' });
  const key = await readFile(keyPath);
  const x5c = [new X509Certificate(await readFile(certPath)).raw.toString('base64')];
  const expected = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;

  const server: Server = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const scopes = url.searchParams.getAll('scope');
    const authorized = req.headers.authorization === expected;
    seen.push({ scopes, authorized });
    if (!authorized) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    const access = scopes.map((s) => {
      const [type, ...rest] = s.split(':');
      const actions = rest.pop()!.split(',');
      return { type, name: rest.join(':'), actions };
    });
    const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', x5c }));
    const claims = b64url(JSON.stringify({ iss: 'test-issuer', sub: auth.username, aud: 'test-registry', exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access }));
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), { key, dsaEncoding: 'ieee-p1363' });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${header}.${claims}.${b64url(signature)}`, expires_in: 300 }));
  });
  const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)));
  return {
    server,
    settings: { realm: `http://127.0.0.1:${port}/token`, service: 'test-registry', issuer: 'test-issuer', rootcertbundle: certPath },
  };
}

/** Entries of a tar stream: name, type, mode, mtime, uid and content (small test layers only). */
export async function listTar(stream: NodeJS.ReadableStream) {
  const { extract } = await import('tar-stream');
  const entries: { name: string; type: string; mode: number; mtime: number; uid: number; body: Buffer }[] = [];
  const ex = extract();
  const done = (async () => {
    for await (const entry of ex) {
      const parts: Buffer[] = [];
      for await (const c of entry) parts.push(c as Buffer);
      const h = entry.header;
      entries.push({ name: h.name, type: h.type, mode: h.mode, mtime: h.mtime.getTime(), uid: h.uid, body: Buffer.concat(parts) });
    }
  })();
  for await (const chunk of stream) ex.write(chunk as Buffer);
  ex.end(null);
  await done;
  return entries;
}
