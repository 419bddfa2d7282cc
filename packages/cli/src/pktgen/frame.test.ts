import { byteOpsOf, sharedMemoryBuffer } from '@mdev/virtio-ring';
import { countViewReads } from '@mdev/virtio-ring/testing';
import { describe, expect, it } from 'vitest';
import { FramePattern, frameIntact, frameSeq, initFrame, seqBefore, stampFrame } from './frame';

const mac = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);

// Frames in plain memory (checked by words and bytes), and frames in a wasm memory that also
// holds the prepared frames (copied and compared by its byte ops), as pktgen has them in host RAM.
const layouts = {
  plain: (size: number) => ({
    p: new FramePattern(size, mac),
    rx: new Uint8Array(4096),
    tx: new Uint8Array(new SharedArrayBuffer(4096), 64, 2048),
  }),
  'wasm memory': (size: number) => {
    const buffer = sharedMemoryBuffer(1 << 20);
    expect(byteOpsOf(buffer)).not.toBeNull();
    const storage = new Uint8Array(buffer, 65536, FramePattern.bytesFor(size));
    return {
      p: new FramePattern(size, mac, storage),
      rx: new Uint8Array(buffer, 0, 4096),
      tx: new Uint8Array(buffer, 8192 + 64, 2048),
    };
  },
};

describe('FramePattern', () => {
  for (const [layout, make] of Object.entries(layouts))
    for (const size of [60, 61, 63, 64, 512, 1514]) {
      it(`stamps the same bytes as stampFrame and checks like frameIntact (${size} B, ${layout})`, () => {
        const { p, rx, tx } = make(size);
        const ref = new Uint8Array(size);
        initFrame(ref, mac);
        // Received frames at aligned and misaligned offsets of one buffer.
        for (const seq of [0, 1, 255, 256, 257, 0x12345678, 0xffffffff]) {
          stampFrame(ref, seq);
          const got = new Uint8Array(size);
          p.stamp(got, seq);
          expect(got).toEqual(ref);
          for (const off of [12, 13, 14, 15]) {
            rx.set(got, off);
            expect(p.seqOf(rx, off)).toBe(frameSeq(rx, off));
            expect(p.intact(rx, off, size)).toBe(true);
            expect(frameIntact(rx, off, size, size, mac)).toBe(true);
            // A flipped byte (the low sequence byte included: another payload class), or a wrong length,
            // is caught. (A high sequence byte flipped makes another intact frame: order catches it.)
            for (const at of [0, 7, 12, 13, 17, 18, 19, 20, size - 1]) {
              rx[off + at]! ^= 0x40;
              expect(p.intact(rx, off, size)).toBe(frameIntact(rx, off, size, size, mac));
              expect(p.intact(rx, off, size)).toBe(false);
              rx[off + at]! ^= 0x40;
            }
            expect(p.intact(rx, off, size - 1)).toBe(false);
          }
          // Built in place in a shared buffer (a transmit slot), by words where aligned and by
          // bytes where not, without touching the bytes around it.
          for (const off of [12, 13, 14, 15]) {
            tx.fill(0xee);
            p.stampAt(tx, off, seq);
            expect(tx.subarray(off, off + size)).toEqual(ref);
            // A sequence number past 2^32 is written modulo 2^32, as writeSeq does.
            p.stampAt(tx, off, seq + 2 ** 32);
            expect(tx.subarray(off, off + size)).toEqual(ref);
            expect(tx[off - 1]).toBe(0xee);
            expect(tx[off + size]).toBe(0xee);
          }
        }
      });
    }

  it("reads a view's byteOffset and buffer once per view, not once per frame", () => {
    for (const make of Object.values(layouts)) {
      const { p, rx, tx } = make(64);
      const rxReads = countViewReads(rx);
      const txReads = countViewReads(tx);
      for (let seq = 0; seq < 100; seq++) {
        p.stampAt(tx, 16, seq);
        rx.set(tx.subarray(16, 80), 32);
        expect(p.intact(rx, 32, 64)).toBe(true);
      }
      // Per view: its offset and buffer when first seen, and the buffer again for a word view.
      expect(rxReads()).toBeLessThanOrEqual(3);
      expect(txReads()).toBeLessThanOrEqual(3);
    }
  });

  it('refuses storage that is too small or misaligned', () => {
    const size = 64;
    const bytes = FramePattern.bytesFor(size);
    expect(() => new FramePattern(size, mac, new Uint8Array(bytes - 1))).toThrow(RangeError);
    expect(() => new FramePattern(size, mac, new Uint8Array(bytes + 8).subarray(2))).toThrow(
      RangeError,
    );
  });
});

describe('seqBefore', () => {
  it('orders 32-bit sequence numbers modulo 2^32, across the wrap', () => {
    expect(seqBefore(5, 6)).toBe(true);
    expect(seqBefore(6, 6)).toBe(false);
    expect(seqBefore(7, 6)).toBe(false);
    // tx passed 2^32: frame 0 comes after 0xffffffff, not before it.
    expect(seqBefore(0, 0xffffffff)).toBe(false);
    expect(seqBefore(0, 2 ** 32)).toBe(false);
    expect(seqBefore(3, 0xfffffffe)).toBe(false);
    // A late frame from before the wrap is still out of order.
    expect(seqBefore(0xffffffff, 0)).toBe(true);
    expect(seqBefore(0xfffffff0, 2)).toBe(true);
  });

  it('keeps the receiver in order through the wrap, as run.ts tracks it', () => {
    let expected = 0xfffffffd;
    let reordered = 0;
    // Sequence numbers as frameSeq reads them: tx from 2^32 - 3 on, modulo 2^32.
    for (let tx = 2 ** 32 - 3; tx < 2 ** 32 + 3; tx++) {
      const seq = tx >>> 0;
      if (seqBefore(seq, expected)) reordered++;
      else expected = (seq + 1) >>> 0;
    }
    expect(reordered).toBe(0);
    expect(expected).toBe(3);
    expect(seqBefore(0xffffffff, expected)).toBe(true);
  });
});
