/**
 * The one egress guard for user-supplied URLs (webhooks, instance_data, trainer outputs and
 * calls). Two checks, both needed:
 * - `checkUrlSyntax` before a request: scheme, credentials, and hosts that are IP literals
 *   (node's net connects to an IP literal without any lookup, so nothing else would see them);
 * - `guardedLookup` at connect time: the address a name resolves to *now*, which defeats DNS
 *   rebinding (a name that resolved to a public address when checked, a private one when used).
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupAddress, LookupOptions } from 'node:dns';
import ipaddr from 'ipaddr.js';

/** Refused URL; `detail` says what to fix and is safe to show the client. */
export class EgressError extends Error {
  override name = 'EgressError';
  readonly code = 'EGRESS_REFUSED';
  constructor(readonly detail: string) {
    super(detail);
  }
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;

// Ranges of ipaddr.js that are publicly routable; every other named range is refused.
const PUBLIC_V4 = new Set(['unicast', 'as112', 'amt']);
const PUBLIC_V6 = new Set(['unicast', 'as112v6', 'amt']);

/** The IPv4 address an IPv6 address carries and that the network may end up reaching. */
function embeddedV4(a: ipaddr.IPv6): ipaddr.IPv4 | null {
  const p = a.parts;
  const v4 = (hi: number, lo: number) => new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  switch (a.range()) {
    case 'ipv4Mapped':
    case 'rfc6145':
    case 'rfc6052':
      return v4(p[6], p[7]);
    case '6to4':
      return v4(p[1], p[2]);
    case 'teredo':
      // The Teredo client address is stored inverted.
      return v4(p[6] ^ 0xffff, p[7] ^ 0xffff);
    default:
      return null;
  }
}

/** Why an address is refused (its range name), or null when it is publicly routable. */
export function refusedRange(address: Address): string | null {
  if (address.kind() === 'ipv4') {
    const range = address.range();
    return PUBLIC_V4.has(range) ? null : range;
  }
  const v6 = address as ipaddr.IPv6;
  const inner = embeddedV4(v6);
  if (inner) {
    const innerRange = refusedRange(inner);
    return innerRange ? `${v6.range()} of ${innerRange}` : null;
  }
  // IPv4-compatible ::a.b.c.d (deprecated) is not a named range in ipaddr.js.
  if (v6.parts.slice(0, 6).every((x) => x === 0)) return v6.range() === 'unicast' ? 'ipv4Compatible' : v6.range();
  const range = v6.range();
  return PUBLIC_V6.has(range) ? null : range;
}

function parseCidrs(allow: string[]): [Address, number][] {
  return allow.map((cidr) => {
    try {
      return ipaddr.parseCIDR(cidr);
    } catch {
      throw new EgressError(`egress.allow entry "${cidr}" is not a CIDR such as 127.0.0.0/8 or ::1/128`);
    }
  });
}

function inAllowList(address: Address, allow: string[]): boolean {
  return parseCidrs(allow).some(([net, bits]) => address.kind() === net.kind() && address.match(net, bits));
}

/** True when `ip` may be reached: publicly routable, or inside one of the `allow` CIDRs. */
export function isAllowedAddress(ip: string, allow: string[]): boolean {
  return refusal(ip, allow) === null;
}

/** The refused range of `ip`, or null when it may be reached. */
function refusal(ip: string, allow: string[]): string | null {
  if (!ipaddr.isValid(ip)) return 'not an IP address';
  // process() turns ::ffff:a.b.c.d into a.b.c.d, so an IPv4 allow-list entry covers both.
  const address = ipaddr.process(ip.replace(/%.*$/, ''));
  if (inAllowList(address, allow)) return null;
  return refusedRange(address);
}

const isLoopbackName = (host: string) => host === 'localhost' || host.endsWith('.localhost');

/**
 * Parses and checks a user-supplied URL before any request. WHATWG URL parsing already
 * normalises IPv4 hosts in every spelling (2130706433, 0177.0.0.1, 0x7f.1, 127.1) to dotted
 * quads and IPv6 hosts to their compressed form, so the range check sees the real address.
 */
export function checkUrlSyntax(url: string, opts: { allow: string[] }): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new EgressError('is not an absolute URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new EgressError(`uses ${parsed.protocol.replace(/:$/, '')}; only http and https URLs are allowed`);
  }
  if (parsed.username || parsed.password) {
    throw new EgressError('carries credentials (user:password@); pass them another way');
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  if (isLoopbackName(host)) {
    if (!isAllowedAddress('127.0.0.1', opts.allow)) {
      throw new EgressError(`host ${host} is a loopback name; use a publicly reachable host`);
    }
    return parsed;
  }
  if (ipaddr.isValid(host)) {
    const why = refusal(host, opts.allow);
    if (why) throw new EgressError(`host ${host} is a ${why} address; use a publicly reachable host`);
  }
  return parsed;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
/** The shape of dns.lookup that node's net and http accept as `lookup`. */
export type LookupFunction = (hostname: string, options: LookupOptions, callback: LookupCallback) => void;

const systemLookup: LookupFunction = (hostname, options, callback) =>
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => callback(err, addresses));

function refusedError(hostname: string, ip: string, why: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(
    `${hostname} resolves to ${ip} (${why}), which user-supplied URLs may not reach`,
  );
  err.code = 'EGRESS_REFUSED';
  return err;
}

/**
 * A dns.lookup replacement that refuses the connection when ANY resolved address is refused:
 * with happy-eyeballs, net may try each address in turn, so one bad address is enough.
 * `lookup` replaces the resolver (tests make names "resolve" without DNS).
 */
export function guardedLookup(allow: string[], lookup: LookupFunction = systemLookup): LookupFunction {
  parseCidrs(allow);
  return (hostname, options, callback) => {
    lookup(hostname, { ...options, all: true }, (err, result, family) => {
      if (err) return callback(err, []);
      const list: LookupAddress[] = Array.isArray(result) ? result : [{ address: result, family: family ?? 4 }];
      if (list.length === 0) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), []);
      for (const { address } of list) {
        const why = refusal(address, allow);
        if (why) return callback(refusedError(hostname, address, why), []);
      }
      if (options.all) return callback(null, list);
      callback(null, list[0].address, list[0].family);
    });
  };
}

/** An agent whose every connection goes through `guardedLookup`; no keep-alive, no pooling across users. */
export function guardedAgent(
  allow: string[],
  protocol: 'http:' | 'https:' = 'https:',
  lookup?: LookupFunction,
): http.Agent | https.Agent {
  const options = { lookup: guardedLookup(allow, lookup) as http.AgentOptions['lookup'], keepAlive: false };
  return protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
}

/**
 * Both checks for a client that follows URLs a server hands it (a registry's token realm, its
 * blob redirects): those URLs are as untrusted as the user's own, and an IP literal among them
 * would skip the lookup check.
 */
export interface EgressGuard {
  /** Throws EgressError when the URL may not be reached. */
  check(url: URL): void;
  lookup: LookupFunction;
}

export function egressGuard(allow: string[], lookup?: LookupFunction): EgressGuard {
  return { check: (url) => void checkUrlSyntax(url.href, { allow }), lookup: guardedLookup(allow, lookup) };
}
