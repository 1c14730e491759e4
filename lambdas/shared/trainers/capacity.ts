/** How many runs a trainer takes at once, and which server each of its slots runs on. */
import type { TrainerConfig } from '../config.ts';

/**
 * Defaults by backend. A Cog server (and the demo trainer, which speaks Cog) runs one
 * prediction at a time; SageMaker's usual first quota is one instance of a GPU type. Replicate
 * queues and scales on its side, so the cap there only bounds the spend in flight: 10 keeps a
 * burst within Replicate's create-rate limits while still running a team's work in parallel.
 */
export const DEFAULT_CONCURRENCY: Readonly<Record<string, number>> = { cog: 1, demo: 1, sagemaker: 1, replicate: 10 };

/** The servers of a pooled trainer (cog, or the demo trainer served over HTTP); [] for the others. */
export function serversOf(t: TrainerConfig): string[] {
  if (t.backend !== 'cog' && t.backend !== 'demo') return [];
  return t.urls ?? (t.url ? [t.url] : []);
}

/** Runs at once per server (pools), or for the whole trainer. */
const perServer = (t: TrainerConfig) => t.concurrency ?? DEFAULT_CONCURRENCY[t.backend] ?? 1;

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
