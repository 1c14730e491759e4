/**
 * `<data dir>/local-mode.json`: where a running local mode listens, so that the `dreambooth`
 * command finds it with no settings. It holds no secret: the token stays in `secrets.json`
 * (or in the DREAMBOOTH_API_TOKEN local mode was started with, which is never written down).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOCAL_ADDRESS_FILE } from './names.ts';

export interface LocalAddress {
  url: string;
  pid: number;
  /** Where the API token is: `secrets.json` beside this file, or the starter's environment. */
  token: 'secrets.json' | 'DREAMBOOTH_API_TOKEN';
}

export function writeLocalAddress(dataDir: string, address: LocalAddress): () => void {
  const path = join(dataDir, LOCAL_ADDRESS_FILE);
  writeFileSync(path, JSON.stringify(address, null, 2) + '\n', { mode: 0o600 });
  // Removed on a clean stop only if it is still ours (another local mode may have taken the directory).
  return () => {
    if (readLocalAddress(dataDir)?.pid === address.pid) rmSync(path, { force: true });
  };
}

export function readLocalAddress(dataDir: string): LocalAddress | null {
  const path = join(dataDir, LOCAL_ADDRESS_FILE);
  if (!existsSync(path)) return null;
  try {
    const a = JSON.parse(readFileSync(path, 'utf8')) as LocalAddress;
    return typeof a.url === 'string' && Number.isInteger(a.pid) ? a : null;
  } catch {
    return null;
  }
}

/** The local API token stored by local mode (./secretsmanager/local-secrets.ts), if any. */
export function readLocalToken(dataDir: string): string | null {
  try {
    return (JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')) as { api_token?: string }).api_token ?? null;
  } catch {
    return null;
  }
}

const PORT_FILE = 'local-port';

/**
 * The port to listen on: the one asked for, or with `0` (any) the one the last run on this data
 * directory had, so the callback URLs trainers hold from before a restart still reach it.
 */
export function portFor(dataDir: string, asked: number): number {
  if (asked) return asked;
  try {
    return Number(readFileSync(join(dataDir, PORT_FILE), 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

export function rememberPort(dataDir: string, port: number): void {
  writeFileSync(join(dataDir, PORT_FILE), `${port}\n`);
}
