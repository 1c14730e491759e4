import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import {
  checkUrlSyntax,
  EgressError,
  guardedAgent,
  guardedLookup,
  isAllowedAddress,
  type LookupFunction,
} from '#shared/egress';

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

function refusedDetail(url: string, allow: string[] = []): string {
  try {
    checkUrlSyntax(url, { allow });
  } catch (err) {
    expect(err).toBeInstanceOf(EgressError);
    return (err as EgressError).detail;
  }
  throw new Error(`${url} was not refused`);
}

describe('checkUrlSyntax', () => {
  it.each([
    ['http://2130706433/', 'loopback'],
    ['http://0177.0.0.1/', 'loopback'],
    ['http://0x7f.1/', 'loopback'],
    ['http://127.1/', 'loopback'],
    ['http://127.0.0.1./', 'loopback'],
    ['http://[::1]/', 'loopback'],
    ['http://[::ffff:127.0.0.1]/', 'loopback'],
    ['http://[::ffff:7f00:1]/', 'loopback'],
    ['http://localhost:8080/x', 'loopback name'],
    ['http://LOCALHOST./', 'loopback name'],
    ['http://api.localhost/', 'loopback name'],
    ['http://10.1.2.3/', 'private'],
    ['http://012.0.0.1/', 'private'],
    ['http://172.16.0.1/', 'private'],
    ['http://172.31.255.255/', 'private'],
    ['http://192.168.1.1/', 'private'],
    ['http://[fc00::1]/', 'uniqueLocal'],
    ['http://169.254.169.254/latest/meta-data/', 'linkLocal'],
    ['http://169.254.170.2/v2/credentials', 'linkLocal'],
    ['http://[fd00:ec2::254]/', 'uniqueLocal'],
    ['http://[fe80::1]/', 'linkLocal'],
    ['http://100.64.0.1/', 'carrierGradeNat'],
    ['http://224.0.0.1/', 'multicast'],
    ['http://[ff02::1]/', 'multicast'],
    ['http://0.0.0.0/', 'unspecified'],
    ['http://0/', 'unspecified'],
    ['http://[::]/', 'unspecified'],
    ['http://255.255.255.255/', 'broadcast'],
    ['http://240.0.0.1/', 'reserved'],
    ['http://192.0.2.1/', 'reserved'],
    ['http://[::7f00:1]/', 'ipv4Compatible'],
    ['http://[2002:a00:1::]/', '6to4 of private'],
    ['http://[64:ff9b::a9fe:a9fe]/', 'rfc6052 of linkLocal'],
    ['http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/', 'teredo of loopback'],
  ])('refuses %s (%s)', (url, range) => {
    expect(refusedDetail(url)).toContain(range);
  });

  it.each([
    ['ftp://example.com/x', 'only http and https'],
    ['file:///etc/passwd', 'only http and https'],
    ['javascript:alert(1)', 'only http and https'],
    ['https://user:pass@example.com/', 'credentials'],
    ['https://user@example.com/', 'credentials'],
    ['not a url', 'not an absolute URL'],
    ['/relative/path', 'not an absolute URL'],
  ])('refuses %s', (url, detail) => {
    expect(refusedDetail(url)).toContain(detail);
  });

  it.each([
    'https://example.com/hook?secret=1',
    'http://8.8.8.8/',
    'https://[2606:4700:4700::1111]/',
    'https://127.0.0.1.nip.io/',
    'https://[2002:808:808::]/',
  ])('lets %s through (names are checked again at connect time)', (url) => {
    expect(checkUrlSyntax(url, { allow: [] }).href).toBe(new URL(url).href);
  });

  it('lets allow-listed ranges through, in any spelling', () => {
    for (const url of ['http://127.0.0.1:9000/', 'http://2130706433/', 'http://[::ffff:127.0.0.1]/', 'http://localhost/', 'http://[::1]/']) {
      expect(checkUrlSyntax(url, { allow: LOOPBACK }).protocol).toBe('http:');
    }
    expect(refusedDetail('http://10.0.0.1/', LOOPBACK)).toContain('private');
    expect(checkUrlSyntax('http://10.0.0.1/', { allow: ['10.0.0.0/24'] }).hostname).toBe('10.0.0.1');
  });

  it('refuses an allow list entry that is not a CIDR', () => {
    expect(refusedDetail('http://10.0.0.1/', ['10.0.0.1'])).toContain('is not a CIDR');
  });
});

describe('isAllowedAddress', () => {
  it('allows public addresses and allow-listed private ones', () => {
    expect(isAllowedAddress('93.184.216.34', [])).toBe(true);
    expect(isAllowedAddress('2606:4700:4700::1111', [])).toBe(true);
    expect(isAllowedAddress('127.0.0.1', [])).toBe(false);
    expect(isAllowedAddress('127.0.0.1', LOOPBACK)).toBe(true);
    expect(isAllowedAddress('::ffff:127.0.0.1', LOOPBACK)).toBe(true);
    expect(isAllowedAddress('::ffff:10.0.0.1', LOOPBACK)).toBe(false);
    expect(isAllowedAddress('fe80::1%eth0', [])).toBe(false);
    expect(isAllowedAddress('not-an-ip', [])).toBe(false);
  });
});

/** A resolver that answers from a table instead of DNS. */
const fakeResolver =
  (table: Record<string, string[]>): LookupFunction =>
  (hostname, _options, callback) => {
    const addresses = table[hostname];
    if (!addresses) return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), []);
    callback(null, addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
  };

function lookupOnce(lookup: LookupFunction, hostname: string, all: boolean) {
  return new Promise<{ err: NodeJS.ErrnoException | null; result: string | LookupAddress[] }>((resolve) =>
    lookup(hostname, { all }, (err, result) => resolve({ err, result })),
  );
}

describe('guardedLookup', () => {
  const resolver = fakeResolver({
    'public.test': ['93.184.216.34', '2606:2800:220:1::1'],
    'rebind.test': ['10.0.0.1'],
    'mixed.test': ['93.184.216.34', '169.254.169.254'],
    'loop.test': ['127.0.0.1'],
  });

  it('passes public addresses through, in both callback forms', async () => {
    const lookup = guardedLookup([], resolver);
    expect((await lookupOnce(lookup, 'public.test', true)).result).toEqual([
      { address: '93.184.216.34', family: 4 },
      { address: '2606:2800:220:1::1', family: 6 },
    ]);
    const one = await lookupOnce(lookup, 'public.test', false);
    expect(one).toEqual({ err: null, result: '93.184.216.34' });
  });

  it.each(['rebind.test', 'mixed.test', 'loop.test'])('refuses %s with EGRESS_REFUSED', async (host) => {
    const { err } = await lookupOnce(guardedLookup([], resolver), host, true);
    expect(err?.code).toBe('EGRESS_REFUSED');
    expect(err?.message).toContain(host);
  });

  it('allows what the allow list covers', async () => {
    expect((await lookupOnce(guardedLookup(LOOPBACK, resolver), 'loop.test', false)).result).toBe('127.0.0.1');
  });

  it('passes resolver errors on', async () => {
    expect((await lookupOnce(guardedLookup([], resolver), 'missing.test', false)).err?.code).toBe('ENOTFOUND');
  });

  it('guards the system resolver (localhost resolves to loopback)', async () => {
    expect((await lookupOnce(guardedLookup([]), 'localhost', false)).err?.code).toBe('EGRESS_REFUSED');
    expect((await lookupOnce(guardedLookup(LOOPBACK), 'localhost', false)).err).toBeNull();
  });
});

describe('guardedAgent', () => {
  async function withServer(fn: (port: number, connections: () => number) => Promise<void>) {
    let connections = 0;
    const server = http.createServer((_req, res) => res.end('reached'));
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await fn((server.address() as AddressInfo).port, () => connections);
    } finally {
      server.close();
    }
  }

  const get = (url: string, agent: http.Agent) =>
    new Promise<string>((resolve, reject) => {
      http
        .get(url, { agent }, (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });

  it('refuses at connect time a name that resolves to a refused address, before any connection', async () => {
    await withServer(async (port, connections) => {
      const resolver = fakeResolver({ 'rebind.test': ['127.0.0.1'] });
      const url = `http://rebind.test:${port}/`;
      await expect(get(url, guardedAgent([], 'http:', resolver))).rejects.toMatchObject({ code: 'EGRESS_REFUSED' });
      expect(connections()).toBe(0);
      expect(await get(url, guardedAgent(LOOPBACK, 'http:', resolver))).toBe('reached');
      expect(connections()).toBe(1);
    });
  });
});
