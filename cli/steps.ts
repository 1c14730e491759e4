/**
 * The trainer's progress, read from its logs; the last report wins: the demo trainer's
 * `Steps: 10/30`, Cog-style `step 10/30`, or a tqdm bar as diffusers' DreamBooth script
 * prints it (`Steps:  45%|████▌     | 900/2000 [01:02<01:15, …]`).
 */
const STEP_RE = /\bsteps?\s*[:=]?\s*(\d+)\s*\/\s*(\d+)|\|\s*(\d+)\/(\d+)\s*\[/gi;

export interface Steps {
  done: number;
  total: number;
}

export function parseSteps(logs: string | null | undefined): Steps | null {
  if (!logs) return null;
  let last: Steps | null = null;
  for (const m of logs.matchAll(STEP_RE)) {
    const done = Number(m[1] ?? m[3]);
    const total = Number(m[2] ?? m[4]);
    if (total > 0 && done <= total) last = { done, total };
  }
  return last;
}
