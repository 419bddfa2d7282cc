import { describe, expect, it } from 'vitest';
import { DmaAllocator, offsetDmaOps } from './dma';
import { GuestMemory } from './memory';
import { runEchoDriver, spawnEchoDevice } from './testing';
import { Virtqueue } from './virtqueue';

const BASE = 0x10_0000;
const COUNT = 1_000_000;

describe('driver in this thread, device in a worker over SharedArrayBuffer', () => {
  for (const eventIdx of [true, false]) {
    it(`moves ${COUNT} buffers with payload and order checked (event idx ${eventIdx ? 'on' : 'off'})`, async () => {
      const memory = new GuestMemory();
      memory.addRegion(BASE, new SharedArrayBuffer(1 << 20));
      const alloc = new DmaAllocator(memory, BASE);
      let device: ReturnType<typeof spawnEchoDevice> | undefined;
      const vq = Virtqueue.create<number>({
        index: 0,
        num: 256,
        memory,
        dma: offsetDmaOps(alloc),
        eventIdx,
        notify: () => {
          device?.doorbell.signal();
          return true;
        },
      })!;
      device = spawnEchoDevice(memory, {
        num: vq.num,
        descAddr: vq.descAddr,
        availAddr: vq.availAddr,
        usedAddr: vq.usedAddr,
        eventIdx,
      });
      const frame = 64;
      const area = alloc.alloc(vq.num * frame, 64)!;
      try {
        const stats = runEchoDriver(vq, memory, area, frame, COUNT, device.interrupt);
        expect(stats.received).toBe(COUNT);
        // Suppression works: far fewer kicks than buffers.
        expect(stats.kicks).toBeLessThan(COUNT / 4);
      } finally {
        const result = await device.stop();
        expect(result.error).toBe(0);
        expect(result.chains).toBe(COUNT);
        expect(result.bytes).toBe(COUNT * frame);
      }
      expect(vq.isBroken).toBe(false);
      expect(vq.numFree).toBe(vq.num);
    }, 60_000);
  }
});
