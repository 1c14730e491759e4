/**
 * A local storage service, s3rver (S3) or dynalite (DynamoDB), in a worker thread of its own
 * (./storage-host.cjs) on 127.0.0.1, persisted under the data directory: their request parsing,
 * validation and LevelDB work run beside local mode's thread, not in it.
 */
import { Worker } from 'node:worker_threads';
import type { S3Decision } from './iam/proxy.ts';
import type { S3Request } from './iam/requests.ts';
import { plainWorkerFlags } from './worker-flags.ts';

export interface LocalService {
  url: string;
  close: () => Promise<void>;
}

/** Local S3 also takes access keys made after it started, and local IAM's gate. */
export interface LocalS3 extends LocalService {
  addKeys: (keys: AccessKey[]) => Promise<void>;
  /** From now on every request waits for `decide` (in this thread) before s3rver serves it. */
  gate: (decide: (request: S3Request) => Promise<S3Decision>) => Promise<void>;
}

/** Access keys s3rver accepts (besides its own S3RVER pair). */
export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
}

type HostMessage =
  | { type: 'ready'; port: number }
  | { type: 'closed' }
  | { type: 'keys-added' }
  | { type: 'gated' }
  | { type: 'error'; message: string }
  | { type: 'authorize'; id: number; request: S3Request };

/** A storage service in its own worker thread (see storage-host.cjs), on 127.0.0.1. */
export async function startHosted(kind: 's3' | 'dynamodb', path: string, keys: AccessKey[] = []): Promise<LocalS3> {
  const worker = new Worker(new URL('./storage-host.cjs', import.meta.url), { workerData: { kind, path, keys }, execArgv: plainWorkerFlags() });
  let decide: ((request: S3Request) => Promise<S3Decision>) | undefined;
  // Replies to this thread's requests, in order; the gate's questions are answered on their own.
  const waiting: { resolve: (m: HostMessage) => void; reject: (e: Error) => void }[] = [];
  worker.on('message', (m: HostMessage) => {
    if (m.type !== 'authorize') return waiting.shift()?.resolve(m);
    const answer = (decision: S3Decision) => worker.postMessage({ type: 'decision', id: m.id, decision });
    decide!(m.request).then(answer, (e: Error) => answer({ refuse: { status: 500, code: 'InternalError', message: `local IAM failed: ${e.message}` } }));
  });
  const fail = (e: Error) => {
    for (const w of waiting.splice(0)) w.reject(e);
  };
  worker.on('error', fail).on('exit', (code) => fail(new Error(`local ${kind} stopped (exit ${code})`)));
  const next = () => new Promise<HostMessage>((resolve, reject) => waiting.push({ resolve, reject }));
  const ready = await next();
  if (ready.type !== 'ready') {
    await worker.terminate();
    throw new Error(`local ${kind} did not start: ${ready.type === 'error' ? ready.message : ready.type}`);
  }
  const ask = async (message: unknown) => {
    const reply = next();
    worker.postMessage(message);
    return reply;
  };
  return {
    url: `http://127.0.0.1:${ready.port}`,
    close: async () => {
      await ask('close');
      await worker.terminate();
    },
    addKeys: async (added) => void (await ask({ type: 'keys', keys: added })),
    gate: async (fn) => {
      decide = fn;
      await ask({ type: 'gate' });
    },
  };
}
