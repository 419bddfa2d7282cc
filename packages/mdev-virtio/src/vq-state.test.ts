import { describe, expect, it } from 'vitest';
import { mdevVirtioPackedVqState, mdevVirtioPackedVqStateOf } from './index';

describe('packed vq state (struct vdpa_vq_state_packed in one number)', () => {
  it('puts each index with its wrap counter in bit 15, the used half in the high 16 bits', () => {
    const s = {
      lastAvailIdx: 0x1234,
      lastAvailCounter: 1,
      lastUsedIdx: 0x7fff,
      lastUsedCounter: 1,
    };
    expect(mdevVirtioPackedVqState(s)).toBe(0xffff_9234);
    expect(mdevVirtioPackedVqStateOf(0xffff_9234)).toEqual(s);
    const fresh = { lastAvailIdx: 0, lastAvailCounter: 1, lastUsedIdx: 0, lastUsedCounter: 1 };
    expect(mdevVirtioPackedVqState(fresh)).toBe(0x8000_8000);
  });

  it('reads a 16-bit base (DPDK vhost) as both halves', () => {
    expect(mdevVirtioPackedVqStateOf(0x8005)).toEqual({
      lastAvailIdx: 5,
      lastAvailCounter: 1,
      lastUsedIdx: 5,
      lastUsedCounter: 1,
    });
  });
});
