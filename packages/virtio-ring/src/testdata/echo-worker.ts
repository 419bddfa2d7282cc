// Worker entry used by spawn-worker.test.ts: answers each message with its bytes reversed and the
// URL it was loaded from, proving the module ran as TypeScript inside the worker.
import { parentPort } from 'node:worker_threads';

parentPort?.on('message', (msg: Uint8Array) => {
  parentPort?.postMessage({ reversed: Uint8Array.from(msg).reverse(), url: import.meta.url });
});
