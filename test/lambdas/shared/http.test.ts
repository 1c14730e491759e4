import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HttpError, redactUrl, request, requestStream } from '#shared/http';
import type { LookupFunction } from '#shared/egress';

const LOOPBACK = ['127.0.0.0/8'];

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A loopback server whose routes the tests define; it records what reached it. */
function testServer(routes: Record<string, (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void>) {
  const seen: Seen[] = [];
  let connections = 0;
  const server = http.createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    const route = routes[new URL(req.url!, 'http://x').pathname];
    if (route) route(req, res, body);
    else res.writeHead(404).end();
  });
  server.on('connection', () => connections++);
  return {
    seen,
    connections: () => connections,
    reset: () => {
      seen.length = 0;
      connections = 0;
    },
    start: () => new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))),
    stop: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

async function httpError(p: Promise<unknown>): Promise<HttpError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HttpError);
  return err as HttpError;
}

const resolveTo =
  (address: string): LookupFunction =>
  (_host, _opts, cb) =>
    cb(null, [{ address, family: 4 }]);

let base = '';
let other = '';
const main = testServer({
  '/hello': (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('hello'),
  '/echo': (req, res, body) => res.writeHead(201).end(JSON.stringify({ method: req.method, body })),
  '/redirect': (req, res) => {
    const u = new URL(req.url!, 'http://x');
    res.writeHead(Number(u.searchParams.get('status') ?? 302), { location: u.searchParams.get('to')! }).end();
  },
  '/chain': (req, res) => {
    const n = Number(new URL(req.url!, 'http://x').searchParams.get('n'));
    res.writeHead(302, { location: n > 0 ? `/chain?n=${n - 1}` : '/hello' }).end();
  },
  '/silent': () => {},
  '/stall': (_req, res) => {
    res.writeHead(200, { 'content-length': '100' });
    res.write('partial');
  },
  '/big': (_req, res) => res.writeHead(200, { 'content-length': String(64 * 1024) }).end(Buffer.alloc(64 * 1024)),
  '/big-chunked': (_req, res) => {
    res.writeHead(200);
    for (let i = 0; i < 64; i++) res.write(Buffer.alloc(1024));
    res.end();
  },
});
const second = testServer({ '/landing': (_req, res) => res.writeHead(200).end('landed') });

beforeAll(async () => {
  base = await main.start();
  other = await second.start();
});
afterAll(async () => {
  await main.stop();
  await second.stop();
});
beforeEach(() => {
  main.reset();
  second.reset();
});

describe('request', () => {
  it('gets a response from an allow-listed server', async () => {
    const res = await request(`${base}/hello`, { allow: LOOPBACK });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain');
    expect(res.body.toString()).toBe('hello');
  });

  it.each([
    ['a string', 'text body'],
    ['a Buffer', Buffer.from('buffer body')],
    ['a Readable', Readable.from([Buffer.from('stream '), Buffer.from('body')])],
  ])('sends %s body', async (_, body) => {
    const expected = body instanceof Readable ? 'stream body' : body.toString();
    const res = await request(`${base}/echo`, { method: 'post', body, allow: LOOPBACK, headers: { 'content-type': 'text/plain' } });
    expect(res.status).toBe(201);
    expect(JSON.parse(res.body.toString())).toEqual({ method: 'POST', body: expected });
  });

  it('refuses loopback when it is not allow-listed, without connecting', async () => {
    const err = await httpError(request(`${base}/hello?token=s3cret`));
    expect(err.code).toBe('EGRESS_REFUSED');
    expect(err.message).toContain('loopback');
    expect(err.message).not.toContain('s3cret');
    expect(main.connections()).toBe(0);
  });

  it('refuses private addresses before connecting', async () => {
    const err = await httpError(request('http://10.0.0.1/x?sig=abc', { allow: LOOPBACK }));
    expect(err.code).toBe('EGRESS_REFUSED');
    expect(err.message).toBe('GET http://10.0.0.1/x: host 10.0.0.1 is a private address; use a publicly reachable host');
  });

  it('refuses a name that resolves to a refused address at connect time (rebinding)', async () => {
    const port = new URL(base).port;
    const err = await httpError(request(`http://rebind.test:${port}/hello`, { lookup: resolveTo('10.0.0.1'), allow: LOOPBACK }));
    expect(err.code).toBe('EGRESS_REFUSED');
    expect(err.message).toContain('rebind.test resolves to 10.0.0.1 (private)');
    const loop = await httpError(request(`http://rebind.test:${port}/hello`, { lookup: resolveTo('127.0.0.1') }));
    expect(loop.code).toBe('EGRESS_REFUSED');
    expect(main.connections()).toBe(0);
    const ok = await request(`http://rebind.test:${port}/hello`, { lookup: resolveTo('127.0.0.1'), allow: LOOPBACK });
    expect(ok.body.toString()).toBe('hello');
  });

  it('returns a 3xx as is when redirects are not allowed', async () => {
    const res = await request(`${base}/redirect?to=/hello`, { allow: LOOPBACK });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/hello');
    expect(main.seen.map((s) => s.url)).toEqual(['/redirect?to=/hello']);
  });

  it('follows redirects up to maxRedirects, then returns the 3xx', async () => {
    expect((await request(`${base}/chain?n=1`, { allow: LOOPBACK, maxRedirects: 2 })).body.toString()).toBe('hello');
    const stopped = await request(`${base}/chain?n=2`, { allow: LOOPBACK, maxRedirects: 2 });
    expect(stopped.status).toBe(302);
    expect(stopped.headers.location).toBe('/hello');
    expect(main.seen.map((s) => s.url)).toEqual(['/chain?n=1', '/chain?n=0', '/hello', '/chain?n=2', '/chain?n=1', '/chain?n=0']);
  });

  it('never follows more than 3 redirects', async () => {
    const res = await request(`${base}/chain?n=5`, { allow: LOOPBACK, maxRedirects: 10 });
    expect(res.status).toBe(302);
    expect(main.seen).toHaveLength(4);
  });

  it('re-checks every hop: a redirect to a refused address fails before connecting', async () => {
    const err = await httpError(request(`${base}/redirect?to=http://169.254.169.254/latest/meta-data/`, { allow: LOOPBACK, maxRedirects: 3 }));
    expect(err.code).toBe('EGRESS_REFUSED');
    expect(err.message).toContain('169.254.169.254');
    const port = new URL(base).port;
    const rebound = await httpError(
      request(`${base}/redirect?to=http://evil.test:${port}/hello`, { allow: LOOPBACK, maxRedirects: 3, lookup: resolveTo('10.1.1.1') }),
    );
    expect(rebound.code).toBe('EGRESS_REFUSED');
    expect(main.seen.map((s) => s.url.split('?')[0])).toEqual(['/redirect', '/redirect']);
  });

  it('turns a 303 into a GET without body, and keeps method and body on 307', async () => {
    const see = await request(`${base}/redirect?status=303&to=/echo`, { method: 'POST', body: 'payload', allow: LOOPBACK, maxRedirects: 1 });
    expect(JSON.parse(see.body.toString())).toEqual({ method: 'GET', body: '' });
    const keep = await request(`${base}/redirect?status=307&to=/echo`, { method: 'POST', body: 'payload', allow: LOOPBACK, maxRedirects: 1 });
    expect(JSON.parse(keep.body.toString())).toEqual({ method: 'POST', body: 'payload' });
  });

  it('returns a 307 as is when a streamed body cannot be replayed', async () => {
    const res = await request(`${base}/redirect?status=307&to=/echo`, { method: 'PUT', body: Readable.from(['x']), allow: LOOPBACK, maxRedirects: 1 });
    expect(res.status).toBe(307);
  });

  it('drops credentials on a redirect to another origin', async () => {
    const res = await request(`${base}/redirect?to=${other}/landing`, {
      allow: LOOPBACK,
      maxRedirects: 1,
      headers: { Authorization: 'Bearer s3cret', 'x-trace': 't1' },
    });
    expect(res.body.toString()).toBe('landed');
    expect(main.seen[0].headers.authorization).toBe('Bearer s3cret');
    expect(second.seen[0].headers.authorization).toBeUndefined();
    expect(second.seen[0].headers['x-trace']).toBe('t1');
  });

  it('times out when no response comes', async () => {
    const err = await httpError(request(`${base}/silent?key=abc`, { allow: LOOPBACK, timeoutMs: 200 }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe(`GET ${base}/silent: no response within 200 ms`);
  });

  it('times out when the body stalls', async () => {
    const err = await httpError(request(`${base}/stall`, { allow: LOOPBACK, timeoutMs: 5000, idleTimeoutMs: 200 }));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toContain('stalled');
  });

  it('refuses bodies above maxResponseBytes, declared or counted', async () => {
    expect((await httpError(request(`${base}/big`, { allow: LOOPBACK, maxResponseBytes: 1000 }))).code).toBe('TOO_LARGE');
    const counted = await httpError(request(`${base}/big-chunked`, { allow: LOOPBACK, maxResponseBytes: 1000 }));
    expect(counted.code).toBe('TOO_LARGE');
    expect(counted.message).toContain('exceeds 1000 bytes');
    expect((await request(`${base}/big-chunked`, { allow: LOOPBACK, maxResponseBytes: 64 * 1024 })).body).toHaveLength(64 * 1024);
  });

  it('reports network failures without the query string', async () => {
    const closed = testServer({});
    const url = await closed.start();
    await closed.stop();
    const err = await httpError(request(`${url}/x?X-Amz-Signature=abc`, { allow: LOOPBACK }));
    expect(err.code).toBe('NETWORK');
    expect(err.message).toContain('ECONNREFUSED');
    expect(err.message).not.toContain('X-Amz-Signature');
  });
});

describe('requestStream', () => {
  it('streams a body', async () => {
    const res = await requestStream(`${base}/big-chunked`, { allow: LOOPBACK });
    let bytes = 0;
    for await (const chunk of res.stream) bytes += (chunk as Buffer).length;
    expect(res.status).toBe(200);
    expect(bytes).toBe(64 * 1024);
  });

  it('fails the stream when the body stalls', async () => {
    const res = await requestStream(`${base}/stall`, { allow: LOOPBACK, idleTimeoutMs: 200 });
    const err = await httpError(
      (async () => {
        for await (const _ of res.stream);
      })(),
    );
    expect(err.code).toBe('TIMEOUT');
  });

  it('fails the stream when counted bytes exceed the cap', async () => {
    const res = await requestStream(`${base}/big-chunked`, { allow: LOOPBACK, maxResponseBytes: 4096 });
    const err = await httpError(
      (async () => {
        for await (const _ of res.stream);
      })(),
    );
    expect(err.code).toBe('TOO_LARGE');
  });
});

describe('redactUrl', () => {
  it('keeps origin and path only', () => {
    expect(redactUrl('https://user:pw@bucket.s3.amazonaws.com/k/output.zip?X-Amz-Signature=abc#frag')).toBe(
      'https://bucket.s3.amazonaws.com/k/output.zip',
    );
    expect(redactUrl(new URL('http://127.0.0.1:9000/hook?secret=1'))).toBe('http://127.0.0.1:9000/hook');
    expect(redactUrl('not a url?secret=1')).toBe('(invalid URL)');
  });
});
