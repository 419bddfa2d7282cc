import { afterEach, describe, expect, it, vi } from 'vitest';
import { randomMac } from './index';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('randomMac (eth_random_addr)', () => {
  it('takes cryptographic random bytes and makes them a unicast, locally administered address', () => {
    const random = vi.spyOn(crypto, 'getRandomValues').mockImplementation((a) => {
      (a as Uint8Array).fill(0xff);
      return a;
    });
    const mac = randomMac();
    expect(random).toHaveBeenCalledTimes(1);
    expect([...mac]).toEqual([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);
    random.mockImplementation((a) => {
      (a as Uint8Array).fill(0);
      return a;
    });
    expect([...randomMac()]).toEqual([0x02, 0, 0, 0, 0, 0]);
  });

  it('gives a different address each time', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 16; i++) {
      const mac = randomMac();
      expect(mac.length).toBe(6);
      expect(mac[0]! & 0x01).toBe(0);
      expect(mac[0]! & 0x02).toBe(2);
      seen.add(Buffer.from(mac).toString('hex'));
    }
    expect(seen.size).toBe(16);
  });
});
