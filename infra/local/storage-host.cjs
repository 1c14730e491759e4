// One local storage service (s3rver or dynalite) in its own worker thread: its request parsing,
// validation and LevelDB work then run beside local mode's own thread (the state machine, the
// IAM proxies, the functions' messages) instead of in it — a burst of trainings keeps both cores
// busy. Plain CommonJS, loaded without tsx; it answers `ready` with its port and closes on `close`.
const { ReadStream } = require('node:fs');
const { open } = require('node:fs/promises');
const { parentPort, workerData } = require('node:worker_threads');

let gated = false;
// Called once the service has closed without error (dynalite: clears its crash marker).
let closedCleanly = () => undefined;
let asked = 0;
const decisions = new Map();

function authorize(request) {
  return new Promise((resolve) => {
    const id = ++asked;
    decisions.set(id, resolve);
    parentPort.postMessage({ type: 'authorize', id, request });
  });
}

/** An S3 error answer; HEAD gets the status and headers only (Koa sends no body for HEAD). */
function refuse(ctx, { status, code, message }) {
  ctx.req.resume();
  const escaped = String(message).replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
  ctx.status = status;
  ctx.set('x-amz-request-id', 'local');
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${escaped}</Message><RequestId>local</RequestId></Error>`;
}

const OBJECT_CHUNK = 512 * 1024;

/** Writes s3rver's object stream (its path and inclusive range) to the response itself. */
async function sendObject(ctx) {
  const stream = ctx.body;
  const { path } = stream;
  const start = stream.start ?? 0;
  const end = stream.end ?? Infinity;
  stream.destroy();
  // Koa leaves the response to us; s3rver's status and headers are already on it.
  ctx.respond = false;
  const res = ctx.res;
  let handle;
  // A client that goes away mid-body: its pending writes may never call back.
  const gone = new Promise((resolve) => res.once('close', resolve));
  const settled = (p) => Promise.race([p, gone]);
  try {
    handle = await open(path, 'r');
    const buffers = [Buffer.allocUnsafe(OBJECT_CHUNK), Buffer.allocUnsafe(OBJECT_CHUNK)];
    const written = [Promise.resolve(), Promise.resolve()];
    for (let at = start, i = 0; at <= end && !res.destroyed; i ^= 1) {
      // This buffer's previous write must have left it before it is filled again.
      await settled(written[i]);
      const { bytesRead } = await handle.read(buffers[i], 0, Math.min(OBJECT_CHUNK, end + 1 - at), at);
      if (bytesRead === 0) break;
      at += bytesRead;
      written[i] = new Promise((resolve, reject) => res.write(buffers[i].subarray(0, bytesRead), (e) => (e ? reject(e) : resolve())));
      written[i].catch(() => undefined);
    }
    await settled(Promise.all(written));
    if (!res.destroyed) res.end();
  } catch (e) {
    res.destroy(e);
  } finally {
    await handle?.close();
  }
}

async function start() {
  if (workerData.kind === 'dynamodb') {
    const dynalite = require('dynalite');
    // DynamoDB's own count of an item's size (UTF-8), where dynalite checks its 400 KB limit
    // (PutItem, UpdateItem, BatchWriteItem) through this export.
    require('dynalite/db').itemSize = require('./dynamodb/item-size.cjs').itemSize;
    // The store dynalite makes, for crash recovery (./dynamodb/recover.cjs) before it serves.
    const dynaliteDb = require('dynalite/db');
    const create = dynaliteDb.create;
    let store;
    dynaliteDb.create = (options) => (store = create(options));
    // No artificial CREATING delay: local start-up should not wait for it.
    const server = dynalite({ path: workerData.path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
    dynaliteDb.create = create;
    closedCleanly = await require('./dynamodb/recover.cjs').recoverIfUnclean(store, workerData.path);
    await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    return server;
  }
  const S3rver = require('s3rver');
  // Objects written whole and renamed into place, and CopyObject by hard link (./s3-store.cjs).
  require('./s3-store.cjs');
  // s3rver's one account holds every function's key: each function signs as itself and an
  // unknown key id is refused. s3rver does not verify SigV4 signatures themselves.
  const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');
  for (const k of workerData.keys) DUMMY_ACCOUNT.createKeyPair(k.accessKeyId, k.secretAccessKey);
  const s3rver = new S3rver({ address: '127.0.0.1', port: 0, directory: workerData.path, silent: true });
  // Object bodies: s3rver answers a GetObject with an fs read stream, which allocates a new
  // 64 KiB buffer per read; a build reading 512 MiB back then kept this thread's GC (and the
  // shared GC helper threads) busy for as long as the reading itself. The same bytes go out
  // through two reused buffers instead, each refilled once the socket has taken it.
  s3rver.middleware.unshift(async (ctx, next) => {
    await next();
    if (ctx.method === 'GET' && ctx.body instanceof ReadStream && typeof ctx.body.path === 'string') await sendObject(ctx);
  });
  // Local IAM's gate, in front of s3rver's routes (s3rver is a Koa app): once enabled, each
  // request's method, URL and headers go to local mode's thread, which answers with a decision
  // (./iam/proxy.ts decideS3); the bytes stay here.
  s3rver.middleware.unshift(async (ctx, next) => {
    if (!gated) return next();
    const decision = await authorize({ method: ctx.method, url: ctx.url, headers: ctx.headers });
    if (decision.refuse) return refuse(ctx, decision.refuse);
    // s3rver throws its S3 errors (NoSuchKey: status 404) up to its own error renderer.
    const hide = () => refuse(ctx, { status: 403, code: 'AccessDenied', message: 'Access Denied' });
    try {
      await next();
    } catch (err) {
      if (decision.hideMissing && err && err.status === 404) return hide();
      throw err;
    }
    if (decision.hideMissing && ctx.status === 404) hide();
  });
  await s3rver.run();
  return s3rver.httpServer;
}

start().then(
  (server) => {
    parentPort.postMessage({ type: 'ready', port: server.address().port });
    parentPort.on('message', (m) => {
      if (m && m.type === 'decision') {
        const resolve = decisions.get(m.id);
        decisions.delete(m.id);
        return resolve?.(m.decision);
      }
      if (m && m.type === 'gate') {
        gated = true;
        return parentPort.postMessage({ type: 'gated' });
      }
      if (m && m.type === 'keys') {
        // Principals made after start-up (local IAM): their keys join s3rver's account.
        const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');
        for (const k of m.keys) DUMMY_ACCOUNT.createKeyPair(k.accessKeyId, k.secretAccessKey);
        return parentPort.postMessage({ type: 'keys-added' });
      }
      if (m !== 'close') return;
      server.close((err) => {
        if (!err) closedCleanly();
        parentPort.postMessage({ type: 'closed' });
      });
      // SDK clients keep idle sockets open; without this, close() waits for them to time out.
      server.closeAllConnections();
    });
  },
  (e) => parentPort.postMessage({ type: 'error', message: e?.stack ? e.stack : String(e) }),
);
