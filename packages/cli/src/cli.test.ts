import { describe, expect, it } from 'vitest';
import { main } from './cli';
import { capture } from './testing/capture';

describe('mdev', () => {
  it('runs the documented create/remove flow through sysfs', async () => {
    const { io, text } = capture();
    expect(await main(['demo'], io)).toBe(0);
    const lines = text.out.split('\n');
    expect(lines).toContain('sample-1');
    expect(lines).toContain('Sample device');
    const uuid = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
    // available_instances drops by one while the mdev exists.
    expect(lines.filter((l) => /^\d+$/.test(l))).toEqual(['4', '3']);
    const listings = lines.filter((_, i) => lines[i - 1] === '# ls /sys/bus/mdev/devices');
    expect(listings).toEqual([uuid, '']);
    expect(text.out).toContain('/mdev_supported_types/sample-1\n');
  });

  it('rejects an unknown command with exit code 2', async () => {
    const { io, text } = capture();
    expect(await main(['nope'], io)).toBe(2);
    expect(text.err).toContain("unknown command 'nope'");
  });
});

describe('mdev types and mdev sysfs', () => {
  it('lists the mvnet_loopback type with its attributes', async () => {
    const { io, text } = capture();
    expect(await main(['types'], io)).toBe(0);
    expect(text.out).toContain('mvnet_loopback\n  mvnet_loopback-virtio\n');
    expect(text.out).toContain('    Device API: virtio-mdev\n');
    expect(text.out).toContain('    Name: virtio-net\n');
  });

  it('prints the tree after setup, with virtio0 under the mdev', async () => {
    const { io, text } = capture();
    expect(await main(['sysfs', '/sys/bus/mdev_virtio'], io)).toBe(0);
    expect(text.out).toMatch(
      /\/sys\/bus\/mdev_virtio\/devices\/[0-9a-f-]{36} -> \/sys\/devices\/virtual\/mvnet_loopback\/mvnet_loopback\/[0-9a-f-]{36}\n/,
    );
    expect(text.out).toContain('/sys/bus/mdev_virtio/drivers/virtio_mdev/');
    const bad = capture();
    expect(await main(['sysfs', '/sys/nope'], bad.io)).toBe(1);
    expect(bad.text.err).toContain('no such file');
  });
});
