import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { byteOpsOf, sharedMemoryBuffer, WASM_PAGE, wasmMemoryOf } from './bytes';
import { GuestMemory } from './memory';

describe('byte ops of a wasm memory', () => {
  it('come with buffers of whole 64 KiB pages only', () => {
    const wasm = sharedMemoryBuffer(2 * WASM_PAGE);
    expect(wasm).toBeInstanceOf(SharedArrayBuffer);
    expect(wasm.byteLength).toBe(2 * WASM_PAGE);
    expect(byteOpsOf(wasm)).not.toBeNull();
    expect(wasmMemoryOf(wasm)?.buffer).toBe(wasm);
    expect(new Uint8Array(wasm).every((b) => b === 0)).toBe(true);
    for (const plain of [sharedMemoryBuffer(4096), new SharedArrayBuffer(WASM_PAGE)]) {
      expect(byteOpsOf(plain)).toBeNull();
      expect(wasmMemoryOf(plain)).toBeUndefined();
    }
    expect(byteOpsOf(new ArrayBuffer(WASM_PAGE))).toBeNull();
  });

  it('fall back to a plain buffer when no wasm memory can be had', () => {
    const api = (globalThis as unknown as { WebAssembly: { Memory: unknown } }).WebAssembly;
    const real = api.Memory;
    api.Memory = function NoMemory() {
      throw new RangeError('WebAssembly.Memory(): could not allocate memory');
    };
    try {
      const buffer = sharedMemoryBuffer(WASM_PAGE);
      expect(buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(buffer.byteLength).toBe(WASM_PAGE);
      expect(byteOpsOf(buffer)).toBeNull();
    } finally {
      api.Memory = real;
    }
    expect(byteOpsOf(sharedMemoryBuffer(WASM_PAGE))).not.toBeNull();
  });

  it('copy as memmove does and compare byte for byte, at any length and alignment', () => {
    const buffer = sharedMemoryBuffer(WASM_PAGE);
    const ops = byteOpsOf(buffer)!;
    const u8 = new Uint8Array(buffer);
    const ref = new Uint8Array(4096);
    // Up to 256 bytes a copy between ranges apart runs in a loop of 16-, 4- and 1-byte steps,
    // the rest in memory.copy: both sides of the limit, every step's remainder.
    for (const len of [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 20, 64, 76, 255, 256, 257, 1514]) {
      for (const [src, dst] of [
        [0, 2048],
        [3, 2053],
        [100, 104], // overlapping, forwards
        [104, 100], // overlapping, backwards
        [1000, 1000],
      ] as const) {
        for (let i = 0; i < 4096; i++) u8[i] = (i * 13 + len) & 0xff;
        ref.set(u8.subarray(0, 4096));
        ref.copyWithin(dst, src, src + len);
        ops.copy(dst, src, len);
        expect(u8.subarray(0, 4096)).toEqual(ref);
        expect(ops.equal(dst, dst, len)).toBe(true);
      }
      // Equal ranges, then one differing byte anywhere in them.
      for (let i = 0; i < len; i++) u8[3000 + i] = u8[1000 + i] = (i * 7) & 0xff;
      expect(ops.equal(1000, 3000, len)).toBe(true);
      for (const at of new Set([0, len >> 1, len - 1].filter((k) => k >= 0 && k < len))) {
        u8[3000 + at]! ^= 0x80;
        expect(ops.equal(1000, 3000, len)).toBe(false);
        u8[3000 + at]! ^= 0x80;
      }
    }
  });

  it('reach a worker thread with the memory a GuestMemory shares', async () => {
    const memory = new GuestMemory();
    const region = memory.addRegion(0x10_0000, WASM_PAGE);
    expect(byteOpsOf(region.buffer)).not.toBeNull();
    const desc = memory.share();
    expect(desc.regions[0]!.memory).toBe(wasmMemoryOf(region.buffer));
    // The worker rebuilds the memory with the module's code (it only needs WebAssembly) and
    // copies with the byte ops it got.
    region.u8.set([1, 2, 3, 4], 0);
    const worker = new Worker(
      `const { workerData, parentPort } = require('node:worker_threads');
       const { memory } = workerData.regions[0];
       parentPort.postMessage(memory.buffer instanceof SharedArrayBuffer && memory.buffer.byteLength);
       new Uint8Array(memory.buffer).copyWithin(8, 0, 4);
       parentPort.postMessage('copied');`,
      { eval: true, workerData: desc },
    );
    const messages: unknown[] = [];
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (m) => {
        messages.push(m);
        if (m === 'copied') resolve();
      });
      worker.on('error', reject);
    });
    await worker.terminate();
    expect(messages[0]).toBe(WASM_PAGE);
    expect([...region.u8.subarray(8, 12)]).toEqual([1, 2, 3, 4]);
    // In this thread, fromShared adopts the memory again: the same buffer, with byte ops.
    const again = GuestMemory.fromShared(desc);
    expect(again.regions[0]!.buffer).toBe(region.buffer);
    expect(byteOpsOf(again.regions[0]!.buffer)).not.toBeNull();
  });
});
