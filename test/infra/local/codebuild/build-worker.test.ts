/** Local mode's append builds run in a worker thread: a stop ends the worker at once, and the next build gets a new one. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendWorkers } from '#infra/local/codebuild/append';

const limits = { maxEntries: 10, maxBytes: 10 ** 6 };
const env = {
  TRAINING_ID: 'stop0123456789abcdefgh',
  WEIGHTS_S3_URI: 's3://bucket/staged/output.zip',
  TEMPLATE_IMAGE: `127.0.0.1:1/templates/t@sha256:${'a'.repeat(64)}`,
  IMAGE_REPOSITORY: '127.0.0.1:1/acme/model',
  IMAGE_TAG: 'stop0123456789abcdefgh',
};

describe('append build workers', () => {
  // An S3 endpoint that takes requests and never answers: the build waits there until stopped.
  let server: Server;
  let requests = 0;
  let endpoint = '';
  beforeAll(async () => {
    server = createServer(() => void requests++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await appendWorkers.stop();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const s3 = () => ({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, maxAttempts: 1 });

  it('stops a running build when its signal aborts, and the next build runs in a new worker', async () => {
    const first = await appendWorkers.ready();
    const stop = new AbortController();
    const running = appendWorkers.run({ env, s3: s3(), registryHost: null, limits }, () => undefined, stop.signal);
    await expect.poll(() => requests, { timeout: 10_000 }).toBeGreaterThan(0);
    const asked = Date.now();
    stop.abort();
    await expect(running).rejects.toThrow('the build was stopped');
    expect(Date.now() - asked).toBeLessThan(1000);

    // The stopped worker is gone; a new one answers the next build (a bad one, refused by its checks).
    const second = await appendWorkers.ready();
    expect(second.threadId).not.toBe(first.threadId);
    await expect(appendWorkers.run({ env: { ...env, TRAINING_ID: 'BAD' }, s3: s3(), registryHost: null, limits }, () => undefined, new AbortController().signal)).rejects.toThrow(/TRAINING_ID/);
  });

  it('keeps a worker that finished for the next build', async () => {
    const before = await appendWorkers.ready();
    await expect(appendWorkers.run({ env: { ...env, TRAINING_ID: 'BAD' }, s3: s3(), registryHost: null, limits }, () => undefined, new AbortController().signal)).rejects.toThrow();
    expect((await appendWorkers.ready()).threadId).toBe(before.threadId);
  });
});
