/**
 * ECR in local mode: Debian's docker-registry (distribution 2.8) on a free loopback port, data
 * under the data dir, holds the images ECR would; the names ECR would refuse are refused; and
 * DescribeImages of a trainer's mirror, the state machine's one ECR call, is answered from it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ecrRepositoryNameProblem } from '#shared/ids';
import { RegistryClient } from '#shared/oci/registry';
import { StateError } from './errors.ts';
import { stickyPort } from './ports.ts';
import { ecrRepositoryArn } from './names.ts';
import type { StandIn } from './stepfunctions/stand-in.ts';

export const REGISTRY_BIN = '/usr/bin/docker-registry';
const SETPRIV = '/usr/bin/setpriv';

export interface LocalRegistry {
  host: string;
  url: string;
  stop(): Promise<void>;
}

export const registryInstalled = () => existsSync(REGISTRY_BIN);

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export async function startRegistry(dataDir: string): Promise<LocalRegistry> {
  // The last run's port when free: trainings and versions name their images by it.
  const portFile = join(dataDir, 'port');
  const port = await stickyPort(Number(await readFile(portFile, 'utf8').catch(() => '')) || 0);
  await mkdir(join(dataDir, 'storage'), { recursive: true });
  await writeFile(portFile, `${port}\n`);
  const configPath = join(dataDir, 'config.yml');
  await writeFile(
    configPath,
    [
      'version: 0.1',
      'log: { level: error }',
      `storage: { filesystem: { rootdirectory: ${JSON.stringify(join(dataDir, 'storage'))} }, delete: { enabled: true } }`,
      `http: { addr: "127.0.0.1:${port}" }`,
      '',
    ].join('\n'),
  );
  // setpriv (util-linux) makes the registry die with local mode even if local mode is killed.
  const [cmd, args] = existsSync(SETPRIV)
    ? [SETPRIV, ['--pdeathsig', 'TERM', '--', REGISTRY_BIN, 'serve', configPath]]
    : [REGISTRY_BIN, ['serve', configPath]];
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr.trim()}`);
    try {
      const res = await fetch(`${url}/v2/`);
      if (res.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not answer on ${url}: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host: `127.0.0.1:${port}`,
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}



/**
 * Local mode's image store stands for ECR, but distribution (and a layout on disk) takes names
 * ECR refuses (`a__b`, `a--b`): why ECR would refuse the repository a build pushes to, or null.
 * In a layout, `oci:<dir>/<owner>/<name>`, the name is the model's last two path parts; the
 * directory above is the machine's.
 */
export function ecrWouldRefuse(imageRepository: string): string | null {
  const path = imageRepository.startsWith('oci:')
    ? imageRepository.split('/').slice(-2).join('/')
    : imageRepository.slice(imageRepository.indexOf('/') + 1);
  const problem = ecrRepositoryNameProblem(path);
  return problem && `ECR would refuse the repository name ${path}: it ${problem}`;
}

/**
 * ECR DescribeImages of a trainer's mirror in local mode: the local registry stands for ECR.
 * Without one (an OCI layout on disk) nothing is in "ECR", and the mirror that follows is a no-op.
 */
export async function describeLocalImages(input: unknown, registryHost: string | null): Promise<unknown> {
  const { RepositoryName, ImageIds } = input as { RepositoryName: string; ImageIds: { ImageDigest: string }[] };
  const notFound = () => new StateError('Ecr.ImageNotFoundException', `The image with imageId {imageDigest:'${ImageIds[0]?.ImageDigest}'} does not exist within the repository with name '${RepositoryName}'`);
  if (!registryHost) throw notFound();
  const store = new RegistryClient({ baseUrl: `http://${registryHost}` });
  const imageDetails = [];
  for (const { ImageDigest } of ImageIds) {
    const found = await store.headManifest(RepositoryName, ImageDigest);
    if (!found) throw notFound();
    imageDetails.push({ repositoryName: RepositoryName, imageDigest: found.digest, imageManifestMediaType: found.mediaType });
  }
  return { ImageDetails: imageDetails };
}

export const describeImagesTask: StandIn = (ctx) => async (input) => {
  const services = await ctx.services;
  services.checkIntegration('ecr:DescribeImages', ecrRepositoryArn((input as { RepositoryName: string }).RepositoryName), 'Ecr.AccessDeniedException');
  return describeLocalImages(input, ctx.registryHost);
};
