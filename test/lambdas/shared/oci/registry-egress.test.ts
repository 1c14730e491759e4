/**
 * A user-named registry hands the client more URLs (a token realm, blob redirects); each goes
 * through the egress guard like a user-supplied URL, IP literals included (node connects to
 * those without any lookup, so the lookup check alone never sees them). Real servers on
 * loopback: the "registry" on 127.0.0.1 (allowed), the realm and redirect target on 127.0.0.2
 * (loopback, not allowed), which count every connection they get.
 */
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressError, egressGuard } from '#shared/egress';
import { RegistryClient } from '#shared/oci/registry';

const ALLOW = ['127.0.0.1/32'];
const DIGEST = `sha256:${'a'.repeat(64)}`;
let realmHost = '';
let redirectHost = '';
let privateHits = 0;
let registry: Server;
let tokenServer: Server;
let tlsTarget: TcpServer;
let registryUrl = '';

const listen = async <T extends Server | TcpServer>(server: T, host: string): Promise<string> => {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return `${host}:${(server.address() as AddressInfo).port}`;
};

beforeAll(async () => {
  tokenServer = createServer((_req, res) => {
    privateHits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'leaked' }));
  });
  realmHost = await listen(tokenServer, '127.0.0.2');
  tlsTarget = createTcpServer((socket) => {
    privateHits++;
    socket.destroy();
  });
  redirectHost = await listen(tlsTarget, '127.0.0.2');
  registry = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    if (url.pathname.startsWith('/v2/private-realm/')) {
      return res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${realmHost}/token",service="reg"` }).end();
    }
    if (url.pathname.startsWith('/v2/public-realm/')) {
      if (req.headers.authorization === 'Bearer fine') return res.writeHead(404).end();
      return res.writeHead(401, { 'www-authenticate': `Bearer realm="${registryUrl}/token",service="reg"` }).end();
    }
    if (url.pathname === '/token') return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'fine' }));
    if (url.pathname.startsWith('/v2/redirect/x/blobs/')) return res.writeHead(307, { location: `https://${redirectHost}/blob` }).end();
    res.writeHead(404).end();
  });
  registryUrl = `http://${await listen(registry, '127.0.0.1')}`;
});

afterAll(async () => {
  for (const s of [registry, tokenServer, tlsTarget]) await new Promise((r) => s?.close(r));
});

describe('RegistryClient with an egress guard', () => {
  const client = () => new RegistryClient({ baseUrl: registryUrl, timeoutMs: 2000, egress: egressGuard(ALLOW) });

  it('fetches a token from a realm the guard allows', async () => {
    expect(await client().headManifest('public-realm/x', 'latest')).toBeNull();
  });

  it('refuses a token realm on a private IP literal, and never connects to it', async () => {
    privateHits = 0;
    const err = await client().headManifest('private-realm/x', 'latest').catch((e) => e);
    expect(err).toBeInstanceOf(EgressError);
    expect(err.message).toMatch(/token realm whose host 127\.0\.0\.2 is a loopback address/);
    expect(privateHits).toBe(0);
  });

  it('refuses a blob redirect to a private IP literal, and never connects to it', async () => {
    privateHits = 0;
    const err = await client().getBlob('redirect/x', DIGEST).catch((e) => e);
    expect(err).toBeInstanceOf(EgressError);
    expect(err.message).toMatch(/redirected blob .* to a URL whose host 127\.0\.0\.2 is a loopback address/);
    expect(privateHits).toBe(0);
  });
});
