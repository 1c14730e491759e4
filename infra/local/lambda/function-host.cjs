// One local Lambda execution environment: loads the function's bundle (the one `cdk synth`
// deploys) in this worker thread and answers invocations. Plain CommonJS, as Lambda's runtime
// loads a CommonJS handler; the handler's logs go to this thread's stdout, as on Lambda.
const { randomUUID } = require('node:crypto');
const { parentPort, workerData } = require('node:worker_threads');

// The SDK's notice about Node 20 would fill each function's log at its cold start; local mode
// prints it once, from its own thread.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, options, ...rest) => {
  const type = typeof options === 'string' ? options : options?.type;
  if (type !== 'NodeVersionSupportWarning') emitWarning(warning, options, ...rest);
};

const { handler } = require(workerData.bundle);

/** Each invocation gets a context as Lambda gives one (its request id is on every log line). */
const contextFor = () => ({ awsRequestId: randomUUID(), functionName: workerData.functionName, getRemainingTimeInMillis: () => 15 * 60_000 });

parentPort.on('message', ({ id, event }) => {
  Promise.resolve()
    .then(() => handler(event, contextFor()))
    .then(
      (result) => parentPort.postMessage({ type: 'result', id, result }),
      (e) => {
        const err = e instanceof Error ? e : new Error(String(e));
        parentPort.postMessage({ type: 'error', id, error: { name: err.name, message: err.message, stack: err.stack } });
      },
    );
});
parentPort.postMessage({ type: 'ready' });
