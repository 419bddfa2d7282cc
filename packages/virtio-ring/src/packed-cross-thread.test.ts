import { describe, expect, it } from 'vitest';
import { DmaAllocator, offsetDmaOps } from './dma';
import { GuestMemory } from './memory';
import { PackedVirtqueue } from './packed-virtqueue';
import { runEchoDriver, spawnEchoDevice } from './testing';

const BASE = 0x10_0000;
const COUNT = 300_000;

describe('packed ring: driver in this thread, device in a worker over SharedArrayBuffer', () => {
  for (const [num, eventIdx] of [
    [256, true],
    [255, false],
    [129, true],
  ] as const) {
    it(`moves ${COUNT} buffers with payload and order checked (${num} entries, event idx ${eventIdx ? 'on' : 'off'})`, async () => {
      const memory = new GuestMemory();
      memory.addRegion(BASE, new SharedArrayBuffer(1 << 20));
      const alloc = new DmaAllocator(memory, BASE);
      let device: ReturnType<typeof spawnEchoDevice> | undefined;
      const vq = PackedVirtqueue.create<number>({
        index: 0,
        num,
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
        packed: true,
      });
      const frame = 64;
      const area = alloc.alloc(vq.num * frame, 64)!;
      try {
        const stats = runEchoDriver(vq, memory, area, frame, COUNT, device.interrupt);
        expect(stats.received).toBe(COUNT);
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
