/**
 * Which API to talk to, with which token, and where that came from:
 *   URL:   --api, DREAMBOOTH_API_URL, the `dreambooth login` file, a running local mode;
 *   token: --token, DREAMBOOTH_API_TOKEN, the login file or local mode (each only for its own URL).
 * Local mode is found through its data directory: DREAMBOOTH_DATA_DIR, else the nearest
 * `.dreambooth/` from the current directory upwards (where `npm start` keeps it).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { readLocalAddress, readLocalToken } from '../infra/local/address.ts';
import { UsageError } from './client.ts';

export interface Settings {
  apiUrl: string;
  token: string;
  /** Where the URL came from, for messages (never the token itself). */
  source: string;
}

export interface SettingsFlags {
  api?: string;
  token?: string;
}

interface SavedLogin {
  api_url: string;
  token: string;
}

export function configPath(env = process.env): string {
  if (env.DREAMBOOTH_CONFIG) return resolve(env.DREAMBOOTH_CONFIG);
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'dreambooth', 'config.json');
}

export function readLogin(env = process.env): SavedLogin | null {
  const path = configPath(env);
  if (!existsSync(path)) return null;
  try {
    const j = JSON.parse(readFileSync(path, 'utf8')) as SavedLogin;
    return typeof j.api_url === 'string' && typeof j.token === 'string' ? j : null;
  } catch {
    throw new UsageError(`${path} is not valid JSON; run dreambooth login again`);
  }
}

/** Only the owner may read it: it holds a token. */
export function saveLogin(login: SavedLogin, env = process.env): string {
  const path = configPath(env);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, JSON.stringify(login, null, 2) + '\n', { mode: 0o600 });
  chmodSync(path, 0o600); // writeFileSync's mode applies only when it creates the file
  return path;
}

export function removeLogin(env = process.env): string | null {
  const path = configPath(env);
  if (!existsSync(path)) return null;
  rmSync(path);
  return path;
}

interface FoundLocal {
  url: string;
  token: string | null;
  dataDir: string;
  /** Why there is no token, when there is none. */
  hint?: string;
}

function findDataDir(env: NodeJS.ProcessEnv, cwd: string): string | null {
  if (env.DREAMBOOTH_DATA_DIR) return resolve(cwd, env.DREAMBOOTH_DATA_DIR);
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    if (existsSync(join(dir, '.dreambooth'))) return join(dir, '.dreambooth');
    if (dirname(dir) === dir) return null;
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

export function findLocalMode(env = process.env, cwd = process.cwd()): FoundLocal | null {
  const dataDir = findDataDir(env, cwd);
  const address = dataDir ? readLocalAddress(dataDir) : null;
  // A file left by a local mode that was killed names a server that is gone.
  if (!dataDir || !address || !alive(address.pid)) return null;
  if (address.token === 'DREAMBOOTH_API_TOKEN') {
    return { url: address.url, token: null, dataDir, hint: 'local mode was started with DREAMBOOTH_API_TOKEN: set the same token here' };
  }
  return { url: address.url, token: readLocalToken(dataDir), dataDir };
}

const same = (a: string, b: string) => a.replace(/\/+$/, '') === b.replace(/\/+$/, '');

export function resolveSettings(flags: SettingsFlags, env = process.env, cwd = process.cwd()): Settings {
  const login = readLogin(env);
  const local = () => findLocalMode(env, cwd);
  let apiUrl: string | undefined;
  let source: string;
  if (flags.api) [apiUrl, source] = [flags.api, '--api'];
  else if (env.DREAMBOOTH_API_URL) [apiUrl, source] = [env.DREAMBOOTH_API_URL, 'DREAMBOOTH_API_URL'];
  else if (login) [apiUrl, source] = [login.api_url, configPath(env)];
  else {
    const l = local();
    if (!l) {
      throw new UsageError(
        'no API to talk to: pass --api URL, set DREAMBOOTH_API_URL, run `dreambooth login`, or start local mode (`npm start`) and run this from its directory (or set DREAMBOOTH_DATA_DIR)',
      );
    }
    [apiUrl, source] = [l.url, `local mode (${l.dataDir})`];
  }
  if (!/^https?:\/\/[^\s/]+/.test(apiUrl)) throw new UsageError(`the API URL from ${source} must be an http:// or https:// URL`);

  let token = flags.token || env.DREAMBOOTH_API_TOKEN;
  let hint: string | undefined;
  if (!token && login && same(login.api_url, apiUrl)) token = login.token;
  if (!token) {
    const l = local();
    if (l && same(l.url, apiUrl)) [token, hint] = [l.token ?? undefined, l.hint];
  }
  if (!token) {
    throw new UsageError(`no API token for ${apiUrl}: ${hint ?? 'pass --token, set DREAMBOOTH_API_TOKEN, or run `dreambooth login`'}`);
  }
  return { apiUrl: apiUrl.replace(/\/+$/, ''), token, source };
}
