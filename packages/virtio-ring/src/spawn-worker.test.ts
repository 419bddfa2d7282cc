import { describe, expect, it } from 'vitest';
import { siblingModule, spawnWorker } from './spawn-worker';

describe('siblingModule', () => {
  it('picks the .ts sibling when the caller runs from sources', () => {
    const url = siblingModule('datapath-worker', 'file:///pkg/src/device.ts');
    expect(url.href).toBe('file:///pkg/src/datapath-worker.ts');
  });

  it('picks the .js sibling when the caller runs from dist', () => {
    const url = siblingModule('datapath-worker', 'file:///pkg/dist/index.js');
    expect(url.href).toBe('file:///pkg/dist/datapath-worker.js');
  });
});

describe('spawnWorker', () => {
  it('runs a TypeScript worker entry from sources and exchanges messages', async () => {
    const url = siblingModule('testdata/echo-worker', import.meta.url);
    const worker = spawnWorker(url);
    try {
      const reply = await new Promise<{ reversed: Uint8Array; url: string }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.postMessage(Uint8Array.of(1, 2, 3, 4));
      });
      expect(Array.from(reply.reversed)).toEqual([4, 3, 2, 1]);
      expect(reply.url).toBe(url.href);
    } finally {
      await worker.terminate();
    }
  });
});
