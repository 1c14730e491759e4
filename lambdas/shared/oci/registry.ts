/**
 * A minimal OCI Distribution client: manifests, blobs, cross-repository mounts and streamed
 * uploads, on node's http/https. No docker, no external binaries.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { Authenticator, type Credentials } from './auth.ts';
import { discard, readBody, send } from './http.ts';
import {
  accept,
  type Call,
  checkDigest,
  checkRepo,
  contentType,
  failure,
  header,
  pull,
  push,
  RegistryError,
  RegistrySession,
} from './registry-session.ts';
import {
  DIGEST,
  hashStream,
  pickPlatform,
  parseManifestBody,
  sha256,
  type BlobResult,
  type ImageIndex,
  type ImageStore,
  type ManifestResult,
} from './types.ts';
import { EgressError, type EgressGuard } from '../egress.ts';

export { RegistryError } from './registry-session.ts';

export interface RegistryClientOptions {
  /** `http://127.0.0.1:5000` or `https://…`; only the origin is used. */
  baseUrl: string;
  auth?: Credentials;
  /** Inactivity timeout of every call. @default 30000 */
  timeoutMs?: number;
  /** Upload streams in PATCH requests of this size (buffered, retried) instead of one streamed PATCH. */
  chunkBytes?: number;
  /**
   * For user-named registries: every connection resolves through the guard, and every URL the
   * registry hands out (token realm, blob redirect) is checked like a user-supplied URL.
   */
  egress?: EgressGuard;
}

const MAX_MANIFEST = 4 * 1024 * 1024;

export class RegistryClient implements ImageStore {
  readonly origin: string;
  private readonly session: RegistrySession;
  private readonly chunkBytes?: number;
  private readonly egress?: EgressGuard;

  constructor(opts: RegistryClientOptions) {
    const base = new URL(opts.baseUrl);
    if (!/^https?:$/.test(base.protocol)) throw new Error('registry baseUrl must be http(s)');
    const timeoutMs = opts.timeoutMs ?? 30_000;
    this.session = new RegistrySession(base, new Authenticator(opts.auth, base, timeoutMs, opts.egress), timeoutMs, opts.egress);
    this.origin = base.origin;
    this.chunkBytes = opts.chunkBytes;
    this.egress = opts.egress;
  }

  /** `host[:port]` as it appears in image references. */
  get host(): string {
    return this.session.base.host;
  }

  reference(repo: string, _tag: string, digest: string): string {
    return `${this.host}/${repo}@${digest}`;
  }

  async headManifest(repo: string, ref: string): Promise<{ digest: string; mediaType: string; size: number } | null> {
    const res = await this.call({ method: 'HEAD', url: this.url(repo, 'manifests', ref), scopes: pull(repo), headers: accept, ok: [200, 404] });
    discard(res);
    if (res.statusCode === 404) return null;
    const digest = header(res, 'docker-content-digest') ?? (DIGEST.test(ref) ? ref : undefined);
    if (!digest) throw new RegistryError(`HEAD manifest ${repo}:${ref}: no Docker-Content-Digest`, 200);
    return { digest, mediaType: contentType(res), size: Number(res.headers['content-length'] ?? 0) };
  }

  /** The image manifest for `ref`; an index or manifest list resolves to its linux/amd64 image. */
  async getManifest(repo: string, ref: string): Promise<ManifestResult> {
    const first = await this.fetchManifest(repo, ref);
    if (!first.index) return first.image!;
    const second = await this.fetchManifest(repo, pickPlatform(first.index, `${repo}:${ref}`).digest);
    if (!second.image) throw new RegistryError(`${repo}:${ref}: nested image index`, 200);
    return second.image;
  }

  async getBlob(repo: string, digest: string): Promise<Readable> {
    let url = this.url(repo, 'blobs', digest);
    // Registries redirect blob downloads to storage (S3, a CDN): follow a few, credentials stay home.
    for (let hops = 0; hops < 4; hops++) {
      const res = url.origin === this.origin
        ? await this.call({ method: 'GET', url, scopes: pull(repo), ok: [200, 301, 302, 303, 307, 308] })
        : await send({ method: 'GET', url, timeoutMs: this.session.timeoutMs, lookup: this.egress?.lookup });
      if (res.statusCode === 200) return res;
      discard(res);
      const next = header(res, 'location');
      if (!next || res.statusCode! < 300 || res.statusCode! >= 400) throw await failure(res, 'GET', url);
      url = new URL(next, url);
      if (url.protocol !== 'https:' && url.origin !== this.origin) throw new RegistryError(`blob ${digest} redirected to a non-https URL`, res.statusCode!);
      if (url.origin !== this.origin) this.checkRedirect(url, digest);
    }
    throw new RegistryError(`blob ${digest}: too many redirects`, 0);
  }

  async hasBlob(repo: string, digest: string): Promise<boolean> {
    const res = await this.call({ method: 'HEAD', url: this.url(repo, 'blobs', digest), scopes: pull(repo), ok: [200, 404] });
    discard(res);
    return res.statusCode === 200;
  }

  /** Cross-repository mount: true when the registry linked the blob (201), false when it opened an upload instead (202). */
  async mountBlob(repo: string, digest: string, fromRepo: string): Promise<boolean> {
    const url = this.url(repo, 'blobs', 'uploads/');
    url.searchParams.set('mount', checkDigest(digest));
    url.searchParams.set('from', checkRepo(fromRepo));
    const res = await this.call({ method: 'POST', url, scopes: [...push(repo), ...pull(fromRepo)], ok: [201, 202] });
    discard(res);
    if (res.statusCode === 201) return true;
    await this.cancelUpload(res, repo);
    return false;
  }

  async uploadBlob(repo: string, body: Readable | Buffer, digest?: string): Promise<BlobResult> {
    if (digest) checkDigest(digest);
    let location = await this.startUpload(repo);
    if (Buffer.isBuffer(body)) {
      const actual = sha256(body);
      if (digest && digest !== actual) throw new RegistryError(`blob content does not match ${digest}`, 0, 'DIGEST_INVALID');
      await this.finishUpload(repo, location, actual, body);
      return { digest: actual, size: body.length };
    }
    const hashed = hashStream(body);
    try {
      location = this.chunkBytes
        ? await this.patchChunks(repo, location, hashed.stream, this.chunkBytes)
        : await this.patch(repo, location, hashed.stream);
    } catch (e) {
      body.destroy();
      // The producer's own error (a bad archive, a missing file) says more than the aborted request.
      throw hashed.error() ?? e;
    }
    const actual = hashed.digest();
    if (digest && digest !== actual) {
      await this.cancelUpload(location, repo);
      throw new RegistryError(`blob content does not match ${digest}`, 0, 'DIGEST_INVALID');
    }
    await this.finishUpload(repo, location, actual);
    return { digest: actual, size: hashed.size() };
  }

  /** Pushes a manifest under `tag`; returns its digest, checked against the registry's. */
  async putManifest(repo: string, tag: string, body: Buffer, mediaType: string): Promise<string> {
    const res = await this.call({
      method: 'PUT',
      url: this.url(repo, 'manifests', tag),
      scopes: push(repo),
      headers: { 'content-type': mediaType },
      body,
      ok: [201],
    });
    discard(res);
    const digest = sha256(body);
    const theirs = header(res, 'docker-content-digest');
    if (theirs && theirs !== digest) throw new RegistryError(`registry stored manifest as ${theirs}, expected ${digest}`, 201);
    return digest;
  }

  private async fetchManifest(repo: string, ref: string): Promise<{ index?: ImageIndex; image?: ManifestResult }> {
    const res = await this.call({ method: 'GET', url: this.url(repo, 'manifests', ref), scopes: pull(repo), headers: accept, ok: [200] });
    const raw = await readBody(res, MAX_MANIFEST);
    const digest = sha256(raw);
    if (DIGEST.test(ref) && ref !== digest) throw new RegistryError(`manifest ${repo}@${ref} has digest ${digest}`, 200, 'DIGEST_INVALID');
    const parsed = parseManifestBody(raw, contentType(res), `${repo}:${ref}`);
    if (parsed.index) return { index: parsed.index };
    return { image: { manifest: parsed.manifest!, mediaType: parsed.mediaType, digest, raw } };
  }

  private async startUpload(repo: string): Promise<URL> {
    const res = await this.call({ method: 'POST', url: this.url(repo, 'blobs', 'uploads/'), scopes: push(repo), ok: [202] });
    discard(res);
    return this.location(res);
  }

  /** The whole stream in one PATCH (what docker push does): constant memory, any size. */
  private async patch(repo: string, location: URL, stream: Readable): Promise<URL> {
    const res = await this.call({
      method: 'PATCH',
      url: location,
      scopes: push(repo),
      headers: { 'content-type': 'application/octet-stream' },
      body: stream,
      ok: [202],
    });
    discard(res);
    return this.location(res);
  }

  /** Chunked PATCHes for registries that cap request bodies; each chunk is retried on its own. */
  private async patchChunks(repo: string, location: URL, stream: Readable, size: number): Promise<URL> {
    let offset = 0;
    for await (const chunk of rechunk(stream, size)) {
      const res = await this.call({
        method: 'PATCH',
        url: location,
        scopes: push(repo),
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk.length - 1}` },
        body: chunk,
        ok: [202],
      });
      discard(res);
      location = this.location(res);
      offset += chunk.length;
    }
    return location;
  }

  private async finishUpload(repo: string, location: URL, digest: string, body?: Buffer): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    const res = await this.call({ method: 'PUT', url, scopes: push(repo), headers, body, ok: [201] });
    discard(res);
  }

  private async cancelUpload(from: IncomingMessage | URL, repo: string): Promise<void> {
    try {
      const url = from instanceof URL ? from : this.location(from);
      discard(await this.call({ method: 'DELETE', url, scopes: push(repo), ok: [204, 404] }));
    } catch {
      // An abandoned upload session expires on its own; the caller's real error matters more.
    }
  }

  private checkRedirect(url: URL, digest: string): void {
    try {
      this.egress?.check(url);
    } catch (e) {
      if (e instanceof EgressError) throw new EgressError(`registry ${this.host} redirected blob ${digest} to a URL whose ${e.detail}`);
      throw e;
    }
  }

  // Every call goes through the session (./registry-session.ts).
  private call(c: Call): Promise<IncomingMessage> {
    return this.session.call(c);
  }

  private url(repo: string, kind: 'manifests' | 'blobs', ref: string): URL {
    return this.session.url(repo, kind, ref);
  }

  private location(res: IncomingMessage): URL {
    return this.session.location(res);
  }
}

/** Regroups a stream into buffers of exactly `size` bytes (the last may be shorter). */
async function* rechunk(stream: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  for await (const chunk of stream) {
    let buf = chunk as Buffer;
    while (held + buf.length >= size) {
      const take = size - held;
      parts.push(buf.subarray(0, take));
      yield Buffer.concat(parts);
      buf = buf.subarray(take);
      parts = [];
      held = 0;
    }
    if (buf.length) {
      parts.push(buf);
      held += buf.length;
    }
  }
  if (held) yield Buffer.concat(parts);
}
