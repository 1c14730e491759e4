/** What every command shares: where output goes, the API client, how errors end the process. */
import type { Command } from 'commander';
import { ApiError, Client, NetworkError, UsageError } from '../client.ts';
import { Out } from '../output.ts';
import { resolveSettings, type Settings } from '../settings.ts';

export interface Context {
  out: Out;
  settings: () => Settings;
  client: () => Client;
}

export function context(cmd: Command): Context {
  const flags = cmd.optsWithGlobals() as { api?: string; token?: string };
  let settings: Settings | undefined;
  const get = () => (settings ??= resolveSettings(flags));
  return { out: new Out(), settings: get, client: () => new Client({ baseUrl: get().apiUrl, token: get().token }) };
}

/**
 * A command's action: its number is the exit status; errors print what to do, not a stack.
 * An API error prints its `detail`; a network error names the URL it could not reach.
 */
export function action<A extends unknown[]>(fn: (ctx: Context, ...args: A) => Promise<number>) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const ctx = context(cmd);
    let code: number;
    try {
      // Options with the global ones (--api, --token) merged in, in the options' place.
      code = await fn(ctx, ...([...args.slice(0, -2), cmd.optsWithGlobals()] as A));
    } catch (e) {
      code = 1;
      if (e instanceof ApiError) {
        const hint = e.status === 401 ? ` (${apiOf(ctx)} refused the token: check --token, DREAMBOOTH_API_TOKEN or \`dreambooth login\`)` : '';
        ctx.out.error(`${e.detail} (HTTP ${e.status})${hint}`);
      } else if (e instanceof NetworkError || e instanceof UsageError) ctx.out.error(e.message);
      else ctx.out.error((e as Error).stack ?? String(e));
    }
    // The command is over: exit once its output is written, rather than when the event loop
    // empties, so that nothing left behind (a progress bar's redraw timer, the terminal's
    // input handle after a question) can hold the person's shell.
    await new Promise<void>((resolve) => process.stdout.write('', () => process.stderr.write('', () => resolve())));
    process.exit(code);
  };
}

function apiOf(ctx: Context): string {
  try {
    return ctx.settings().apiUrl;
  } catch {
    return 'the API';
  }
}
