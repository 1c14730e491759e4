/** `dreambooth login` / `logout`: the API URL and token kept in a file only its owner can read. */
import { spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Client, UsageError } from '../client.ts';
import { removeLogin, saveLogin } from '../settings.ts';
import type { Context } from './common.ts';

export async function login(ctx: Context, o: { api?: string; token?: string }): Promise<number> {
  const apiUrl = (o.api ?? process.env.DREAMBOOTH_API_URL ?? '').replace(/\/+$/, '');
  if (!/^https?:\/\/[^\s/]+/.test(apiUrl)) throw new UsageError('login needs the API URL: --api https://… (the stack output ApiUrl, or local mode’s URL)');
  // On a command line a token is visible to other users (ps) and kept in shell history: ask for it.
  const token = o.token || process.env.DREAMBOOTH_API_TOKEN || (await readToken(ctx));
  if (!token) throw new UsageError('no token given');
  // A token that the API refuses is not worth keeping.
  await new Client({ baseUrl: apiUrl, token }).get('/v1/trainers');
  const path = saveLogin({ api_url: apiUrl, token });
  ctx.out.line(`logged in to ${apiUrl}; saved in ${path} (mode 0600)`);
  return 0;
}

export async function logout(ctx: Context): Promise<number> {
  const path = removeLogin();
  ctx.out.line(path ? `removed ${path}` : 'not logged in');
  return 0;
}

/** From the terminal without echo, or the first line of a pipe (`… | dreambooth login`). */
async function readToken(ctx: Context): Promise<string> {
  const tty = Boolean(process.stdin.isTTY);
  if (tty) ctx.out.stderr.write('API token: ');
  const rl = createInterface({ input: process.stdin, terminal: false });
  const muted = tty ? hideEcho() : () => {};
  try {
    for await (const line of rl) return line.trim();
    return '';
  } finally {
    muted();
    rl.close();
    if (tty) ctx.out.stderr.write('\n');
  }
}

/** The terminal's echo off while the token is typed (`stty -echo`, as `read -s` does). */
function hideEcho(): () => void {
  const run = (arg: string) => spawnSync('stty', [arg], { stdio: ['inherit', 'ignore', 'ignore'] });
  run('-echo');
  return () => void run('echo');
}
