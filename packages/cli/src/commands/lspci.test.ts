import { sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import { mdevVfioExit, vfioDeviceOpen, vfioPciIndexToOffset } from '@mdev/mdev-vfio';
import { mttyInit } from '@mdev/samples-legacy';
import { describe, expect, it } from 'vitest';
import { main } from '../cli';
import { capture } from '../testing/capture';
import type { LspciEntry } from './lspci';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('mdev lspci', () => {
  it('creates one mdev of each sample type, lists them from config space, and cleans up', async () => {
    const { io, text } = capture();
    expect(await main(['lspci'], io)).toBe(0);
    const lines = text.out.trimEnd().split('\n');
    const byType = new Map<string, string[]>();
    for (const l of lines) {
      const [uuid, ...rest] = l.split(' ');
      expect(uuid).toMatch(UUID);
      const desc = rest.join(' ');
      byType.set(desc, [...(byType.get(desc) ?? []), uuid!]);
    }
    // mtty-1 and mtty-2, three mdpy and three mbochs displays.
    expect(
      byType.get('Serial controller: Device 4348:3253 (rev 10) (prog-if 02 [16550])'),
    ).toHaveLength(2);
    expect(byType.get('Display controller: Device 1b36:000f (rev 01)')).toHaveLength(3);
    expect(byType.get('Display controller: Device 1234:1111 (rev 01)')).toHaveLength(3);
    expect(lines).toHaveLength(8);
    // Nothing is left behind.
    expect(mdevDevices()).toEqual([]);
    expect(sysfs.exists('/sys/class/mtty')).toBe(false);
    expect(sysfs.exists('/sys/bus/mdev')).toBe(false);
  });

  it('lists the BARs with the sizes found by sizing them (-v), for the types asked for', async () => {
    const { io, text } = capture();
    expect(await main(['lspci', '-v', '--type', 'mtty-2', '--type', 'mdpy-xga'], io)).toBe(0);
    const blocks = text.out.trimEnd().split('\n\n');
    expect(blocks).toHaveLength(2);
    expect(blocks[0]).toContain('\tRegion 0: I/O ports at <unassigned> [size=8]\n');
    expect(blocks[0]).toContain('\tRegion 1: I/O ports at <unassigned> [size=8]\n');
    expect(blocks[0]).toContain('\tInterrupt: pin A\n');
    expect(blocks[0]).toContain('\tmdev type: mtty-2 (parent mtty)');
    expect(blocks[1]).toContain(
      '\tRegion 0: Memory at <unassigned> (32-bit, prefetchable) [size=4M]',
    );
    expect(blocks[1]).not.toContain('Region 1');
  });

  it('lists existing devices without creating any, and leaves their BARs as programmed', async () => {
    const mtty = mttyInit();
    try {
      const uuid = '0a0a0a0a-0000-4000-8000-000000000001';
      sysfs.write(`${mtty.path}/mdev_supported_types/mtty-1/create`, uuid);
      const dev = vfioDeviceOpen(uuid);
      const bar0 = vfioPciIndexToOffset(7) + 0x10;
      dev.writeU32(bar0, 0xc150);
      const { io, text } = capture();
      expect(await main(['lspci', '-v'], io)).toBe(0);
      expect(text.out.split('\n')[0]).toBe(
        `${uuid} Serial controller: Device 4348:3253 (rev 10) (prog-if 02 [16550])`,
      );
      expect(text.out).toContain('\tRegion 0: I/O ports at c150 [size=8]\n');
      expect(dev.readU32(bar0)).toBe(0xc151);
      expect(mdevDevices().map((m) => m.uuid)).toEqual([uuid]);
      dev.close();
    } finally {
      mtty.exit();
      mdevVfioExit();
    }
  });

  it('uses a sample loaded already, and leaves it loaded', async () => {
    const mtty = mttyInit();
    try {
      const { io, text } = capture();
      expect(await main(['lspci', '--type', 'mtty-1'], io)).toBe(0);
      expect(text.out).toMatch(/^[0-9a-f-]{36} Serial controller: Device 4348:3253 \(rev 10\)/);
      expect(mdevDevices()).toEqual([]);
      expect(sysfs.read(`${mtty.path}/mdev_supported_types/mtty-1/available_instances`)).toBe(
        '24\n',
      );
    } finally {
      mtty.exit();
      mdevVfioExit();
    }
  });

  it('prints JSON entries with the decoded header', async () => {
    const { io, text } = capture();
    expect(await main(['lspci', '--json', '--type', 'mbochs-small'], io)).toBe(0);
    const e = JSON.parse(text.out) as LspciEntry;
    expect(e).toMatchObject({
      type: 'mbochs-small',
      vendor: 0x1234,
      device: 0x1111,
      classCode: 0x0380,
      revision: 1,
    });
    expect(e.bars.map((b) => [b.index, b.size, b.io])).toEqual([
      [0, 4 * 2 ** 20, false],
      [2, 4096, false],
    ]);
  });

  it('refuses an unknown type or option and leaves nothing behind', async () => {
    const bad = capture();
    expect(await main(['lspci', '--type', 'mtty-9'], bad.io)).toBe(2);
    expect(bad.text.err).toMatch(/^mdev lspci: no mdev type "mtty-9" \(known: mtty-1, mtty-2, /);
    expect(mdevDevices()).toEqual([]);
    expect(sysfs.exists('/sys/class/mtty')).toBe(false);
    const opt = capture();
    expect(await main(['lspci', '--bogus'], opt.io)).toBe(2);
    expect(opt.text.err).toContain('usage: mdev lspci');
  });
});
