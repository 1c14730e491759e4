// One local storage service (s3rver or dynalite) in its own worker thread: its request parsing,
// validation and LevelDB work then run beside local mode's own thread (the state machine, the
// IAM proxies, the functions' messages) instead of in it — a burst of trainings keeps both cores
// busy. Plain CommonJS, loaded without tsx; it answers `ready` with its port and closes on `close`.
const { parentPort, workerData } = require('node:worker_threads');

async function start() {
  if (workerData.kind === 'dynamodb') {
    const dynalite = require('dynalite');
    // No artificial CREATING delay: local start-up should not wait for it.
    const server = dynalite({ path: workerData.path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
    await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    return server;
  }
  const S3rver = require('s3rver');
  // s3rver's one account holds every function's key: each function signs as itself and an
  // unknown key id is refused. s3rver does not verify SigV4 signatures themselves.
  const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');
  for (const k of workerData.keys) DUMMY_ACCOUNT.createKeyPair(k.accessKeyId, k.secretAccessKey);
  const s3rver = new S3rver({ address: '127.0.0.1', port: 0, directory: workerData.path, silent: true });
  await s3rver.run();
  return s3rver.httpServer;
}

start().then(
  (server) => {
    parentPort.postMessage({ type: 'ready', port: server.address().port });
    parentPort.on('message', (m) => {
      if (m && m.type === 'keys') {
        // Principals made after start-up (local IAM): their keys join s3rver's account.
        const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');
        for (const k of m.keys) DUMMY_ACCOUNT.createKeyPair(k.accessKeyId, k.secretAccessKey);
        return parentPort.postMessage({ type: 'keys-added' });
      }
      if (m !== 'close') return;
      server.close(() => parentPort.postMessage({ type: 'closed' }));
      // SDK clients keep idle sockets open; without this, close() waits for them to time out.
      server.closeAllConnections();
    });
  },
  (e) => parentPort.postMessage({ type: 'error', message: e && e.stack ? e.stack : String(e) }),
);
