/**
 * Reads back what a build pushed (the image's config and the files of its last layer), from a
 * registry or from the OCI layout local mode keeps on a bare machine.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import tar from 'tar-stream';
import { OciLayout } from '#shared/oci/layout';
import { RegistryClient } from '#shared/oci/registry';
import { readImageConfig } from '#shared/oci/append';
import type { ImageStore } from '#shared/oci/types';

/** `host:port/repo@sha256:…` or `oci:<dir>:<tag>`. */
export function openImage(image: string): { store: ImageStore; repo: string; ref: string } {
  if (image.startsWith('oci:')) {
    const at = image.lastIndexOf(':');
    return { store: new OciLayout(image.slice(4, at)), repo: '', ref: image.slice(at + 1) };
  }
  const m = image.match(/^([^/]+)\/(.+)@(sha256:[0-9a-f]{64})$/);
  if (!m) throw new Error(`not a pullable reference: ${image}`);
  return { store: new RegistryClient({ baseUrl: `http://${m[1]}` }), repo: m[2]!, ref: m[3]! };
}

/** A repository as the template catalog names it: `host:port/repo` or `oci:<dir>`. */
export function openRepository(repository: string): { store: ImageStore; repo: string } {
  if (repository.startsWith('oci:')) return { store: new OciLayout(repository.slice(4)), repo: '' };
  const slash = repository.indexOf('/');
  return { store: new RegistryClient({ baseUrl: `http://${repository.slice(0, slash)}` }), repo: repository.slice(slash + 1) };
}

/** Removes one blob from a repository (to break an image on purpose). */
export async function deleteBlob(repository: string, digest: string): Promise<void> {
  if (repository.startsWith('oci:')) return rm(join(repository.slice(4), 'blobs', 'sha256', digest.slice('sha256:'.length)));
  const slash = repository.indexOf('/');
  const res = await fetch(`http://${repository.slice(0, slash)}/v2/${repository.slice(slash + 1)}/blobs/${digest}`, { method: 'DELETE' });
  if (res.status !== 202) throw new Error(`could not delete ${digest} from ${repository}: ${res.status}`);
}

export async function inspectImage(image: string): Promise<{ labels: Record<string, string>; workdir: string; lastLayerFiles: string[] }> {
  const { store, repo, ref } = openImage(image);
  const { config, manifest } = await readImageConfig(store, repo, ref);
  const last = manifest.layers[manifest.layers.length - 1]!;
  const files: string[] = [];
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    files.push(header.name);
    stream.on('end', next);
    stream.resume();
  });
  const blob = await store.getBlob(repo, last.digest);
  const gz = last.mediaType.endsWith('gzip');
  const input = gz ? blob.pipe((await import('node:zlib')).createGunzip()) : blob;
  await new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
    input.pipe(extract);
  });
  const c = (config.config ?? {}) as { Labels?: Record<string, string>; WorkingDir?: string };
  return { labels: c.Labels ?? {}, workdir: c.WorkingDir ?? '', lastLayerFiles: files };
}
