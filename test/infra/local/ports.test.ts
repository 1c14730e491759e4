/** Local mode's listeners keep their port across restarts, and pick a first one no connection takes. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ephemeralRange, listenSticky, stickyPort } from '#infra/local/ports';

const open: Server[] = [];
const server = () => {
  const s = createServer();
  open.push(s);
  return s;
};
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe('sticky ports', () => {
  it('picks a first port below the kernel ephemeral range', async () => {
    const [low] = ephemeralRange();
    const port = await listenSticky(server(), 0);
    expect(port).toBeLessThan(low);
    expect(port).toBeGreaterThanOrEqual(1024);
  });

  it('takes the last port back when it is free, and another one when something holds it', async () => {
    const first = server();
    const port = await listenSticky(first, 0);
    await new Promise((r) => first.close(r));
    expect(await listenSticky(server(), port)).toBe(port);
    // Held now (by the server above): the next one moves.
    const moved = await listenSticky(server(), port);
    expect(moved).not.toBe(port);
    expect(moved).toBeLessThan(ephemeralRange()[0]);
    // A child's port (the registry) is chosen the same way, and left free for it.
    const child = await stickyPort(0);
    expect(await listenSticky(server(), child)).toBe(child);
  });

  it('reads the range from the kernel file, and falls back to the IANA range', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ports-'));
    writeFileSync(join(dir, 'range'), '40000\t50000\n');
    expect(ephemeralRange(join(dir, 'range'))).toEqual([40000, 50000]);
    expect(ephemeralRange(join(dir, 'missing'))).toEqual([49152, 65535]);
  });
});
