/** How many runs a trainer takes at once, and which server each of its slots runs on. */
import { BACKENDS, backendOf, type BackendName, type TrainerConfig } from './backends.ts';

/** Defaults by backend: each backend's `concurrency` (its index.ts says why). */
export const DEFAULT_CONCURRENCY = Object.fromEntries(Object.entries(BACKENDS).map(([name, b]) => [name, b.concurrency])) as Readonly<
  Record<BackendName, number>
>;

/** The servers of a pooled trainer (a cog trainer, or the demo trainer served over HTTP); [] for the others. */
export function serversOf(t: TrainerConfig): string[] {
  return backendOf(t).servers?.(t) ?? [];
}

/** Runs at once per server (pools), or for the whole trainer. */
const perServer = (t: TrainerConfig) => t.concurrency ?? DEFAULT_CONCURRENCY[t.backend];

/** The trainer's slots: per-server concurrency × servers for a pool, else its concurrency. */
export function slotCount(t: TrainerConfig | undefined): number {
  if (!t) return 0;
  const servers = serversOf(t).length;
  return perServer(t) * Math.max(servers, 1);
}

/** The server slot `slot` runs on (slots fill the first server first), or null without a pool. */
export function serverFor(t: TrainerConfig | undefined, slot: number | null): string | null {
  if (!t || slot === null) return null;
  const servers = serversOf(t);
  if (servers.length === 0) return null;
  return servers[Math.floor(slot / perServer(t)) % servers.length] ?? null;
}
