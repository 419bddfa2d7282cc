import { Bus, Class, Device, KernelError, sysfs, type Uevent, uevents } from '@mdev/driver-core';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  kstrtoul,
  MdevDevice,
  type MdevParentOps,
  mdevDeviceCreate,
  mdevDeviceRemove,
  mdevDevices,
  mdevFromDev,
  mdevGetDrvdata,
  mdevGetIommuDevice,
  mdevProbe,
  mdevRegisterBus,
  mdevRegisterDevice,
  mdevRegisterDriver,
  mdevRemove,
  mdevReservedUuids,
  mdevSetDrvdata,
  mdevSetIommuDevice,
  mdevUnregisterBus,
  mdevUnregisterDevice,
} from './index';

const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const U2 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';

let bus: Bus;
let cls: Class;
let log: string[];

beforeEach(() => {
  bus = new Bus({ name: 'mdev', probe: mdevProbe, remove: mdevRemove });
  mdevRegisterBus(bus);
  cls = new Class('mtest');
  cls.register();
  log = [];
});

afterEach(() => {
  mdevUnregisterBus(bus);
  cls.unregister();
  expect(mdevReservedUuids()).toEqual([]);
});

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (KernelError.is(err)) return err.code;
    throw err;
  }
  return 'ok';
}

function testParent(name = 'mtest', over: Partial<MdevParentOps> = {}) {
  const dev = new Device({ name, class: cls });
  dev.add();
  const ops: MdevParentOps = {
    supportedTypeGroups: [
      {
        name: '1',
        attrs: [
          { name: 'name', mode: 0o444, show: () => 'Single port' },
          { name: 'device_api', mode: 0o444, show: () => 'vfio-pci' },
          {
            name: 'available_instances',
            mode: 0o444,
            show: (t) => `${8 - t.parent.dev.children().length}`,
          },
        ],
      },
      { name: '2', attrs: [{ name: 'name', mode: 0o444, show: () => 'Dual port' }] },
    ],
    create: (type, mdev) => {
      log.push(`create ${type.name} ${mdev.uuid} added=${mdev.isAdded}`);
      mdevSetDrvdata(mdev, { type: type.name });
    },
    remove: (mdev) => {
      log.push(`remove ${mdev.uuid} added=${mdev.isAdded}`);
    },
    ...over,
  };
  const parent = mdevRegisterDevice(dev, ops, bus);
  const cleanup = () => {
    mdevUnregisterDevice(dev);
    dev.unregister();
  };
  return { dev, parent, cleanup };
}

describe('the kernel documentation flow', () => {
  it('creates, lists, reads attributes and removes through sysfs', () => {
    const { dev, cleanup } = testParent();
    const types = `${dev.path}/mdev_supported_types`;
    expect(sysfs.list(types)).toEqual(['mtest-1', 'mtest-2']);
    expect(sysfs.list(`${types}/mtest-1`)).toEqual([
      'available_instances',
      'create',
      'device_api',
      'devices',
      'name',
    ]);
    expect(sysfs.read(`${types}/mtest-1/name`)).toBe('Single port\n');
    expect(sysfs.readlink('/sys/class/mdev_bus/mtest')).toBe(dev.path);

    expect(sysfs.write(`${types}/mtest-2/create`, `${U1.toUpperCase()}\n`)).toBe(37);
    const path = `/sys/bus/mdev/devices/${U1}`;
    expect(sysfs.readlink(path)).toBe(`${dev.path}/${U1}`);
    expect(sysfs.readlink(`${path}/mdev_type`)).toBe(`${types}/mtest-2`);
    expect(sysfs.list(`${types}/mtest-2/devices`)).toEqual([U1]);
    expect(sysfs.read(`${types}/mtest-1/available_instances`)).toBe('7\n');
    const mdev = mdevDevices()[0]!;
    expect(mdevFromDev(mdev, bus)).toBe(mdev);
    expect(mdevFromDev(dev, bus)).toBeNull();
    expect(mdevGetDrvdata(mdev)).toEqual({ type: 'mtest-2' });

    expect(sysfs.write(`${path}/remove`, '0\n')).toBe(2);
    expect(sysfs.exists(path)).toBe(true);
    sysfs.write(`${path}/remove`, '1\n');
    expect(sysfs.exists(path)).toBe(false);
    expect(sysfs.list(`${types}/mtest-2/devices`)).toEqual([]);
    expect(log).toEqual([`create mtest-2 ${U1} added=false`, `remove ${U1} added=false`]);
    cleanup();
  });
});

describe('errno of each operation (mdev_core.c, mdev_sysfs.c)', () => {
  it('validates parent registration', () => {
    const dev = new Device({ name: 'p', class: cls });
    dev.add();
    const base = { supportedTypeGroups: [{ name: 'a', attrs: [] }], create() {}, remove() {} };
    expect(code(() => mdevRegisterDevice(dev, { ...base, create: undefined } as never, bus))).toBe(
      'EINVAL',
    );
    expect(code(() => mdevRegisterDevice(dev, { ...base, remove: undefined } as never, bus))).toBe(
      'EINVAL',
    );
    expect(code(() => mdevRegisterDevice(dev, { ...base, supportedTypeGroups: [] }, bus))).toBe(
      'EINVAL',
    );
    expect(
      code(() =>
        mdevRegisterDevice(dev, { ...base, supportedTypeGroups: [{ name: '', attrs: [] }] }, bus),
      ),
    ).toBe('EINVAL');
    expect(sysfs.exists(`${dev.path}/mdev_supported_types`)).toBe(false);
    mdevRegisterDevice(dev, base, bus);
    expect(code(() => mdevRegisterDevice(dev, base, bus))).toBe('EEXIST');
    mdevUnregisterDevice(dev);
    mdevUnregisterDevice(dev); // unknown parent: silent
    dev.unregister();
  });

  it('checks create input, duplicates and vendor errors', () => {
    const a = testParent('pa');
    const b = testParent('pb');
    const create = (p: Device, t: string, text: string) =>
      code(() => sysfs.write(`${p.path}/mdev_supported_types/${t}/create`, text));
    // Both parents belong to class mtest, so their types are named mtest-1 and mtest-2.
    expect(create(a.dev, 'mtest-1', U1.slice(0, 35))).toBe('EINVAL');
    expect(create(a.dev, 'mtest-1', `${U1}\n\n`)).toBe('EINVAL');
    expect(create(a.dev, 'mtest-1', U1.replace('-', 'x'))).toBe('EINVAL');
    expect(create(a.dev, 'mtest-1', U1)).toBe('ok');
    expect(create(b.dev, 'mtest-2', U1)).toBe('EEXIST'); // UUIDs are unique across parents
    expect(create(a.dev, 'mtest-2', U1.toUpperCase())).toBe('EEXIST');
    a.cleanup();
    b.cleanup();

    const failing = testParent('pc', {
      create: () => {
        throw new KernelError('ENOSPC', 'no room');
      },
    });
    expect(code(() => mdevDeviceCreate(failing.dev, '1', U2))).toBe('ENOSPC');
    expect(mdevReservedUuids()).toEqual([]);
    failing.cleanup();
  });

  it('checks remove input and busy or vanished devices', () => {
    const { dev, cleanup } = testParent();
    const mdev = mdevDeviceCreate(dev, '1', U1);
    expect(code(() => sysfs.write(`${mdev.path}/remove`, 'yes'))).toBe('EINVAL');
    expect(code(() => sysfs.write(`${mdev.path}/remove`, '-1'))).toBe('EINVAL');
    mdev.get(); // a user still holds it
    mdevDeviceRemove(mdev);
    expect(code(() => mdevDeviceRemove(mdev))).toBe('EAGAIN');
    expect(mdevReservedUuids()).toEqual([U1]); // reserved until released
    expect(code(() => mdevDeviceCreate(dev, '1', U1))).toBe('EEXIST');
    mdev.put();
    expect(code(() => mdevDeviceRemove(mdev))).toBe('ENODEV');
    expect(mdevReservedUuids()).toEqual([]);
    cleanup();
  });

  it('takes a UUID through the API only whole, with at most a trailing newline', () => {
    const { dev, cleanup } = testParent();
    expect(code(() => mdevDeviceCreate(dev, '1', `${U1}garbage`))).toBe('EINVAL');
    expect(code(() => mdevDeviceCreate(dev, '1', `${U1} `))).toBe('EINVAL');
    expect(mdevReservedUuids()).toEqual([]);
    const m = mdevDeviceCreate(dev, '1', `${U1}\n`);
    expect(m.uuid).toBe(U1);
    mdevDeviceRemove(m);
    cleanup();
  });

  it('answers a remove value beyond 64 bits with EINVAL, as remove_store does', () => {
    const { dev, cleanup } = testParent();
    const mdev = mdevDeviceCreate(dev, '1', U1);
    expect(code(() => sysfs.write(`${mdev.path}/remove`, '99999999999999999999999'))).toBe(
      'EINVAL',
    );
    expect(mdev.isAdded).toBe(true);
    mdevDeviceRemove(mdev);
    cleanup();
  });

  it('undoes only its own files when a vendor attribute group clashes with the parent', () => {
    const dev = new Device({ name: 'pclash', class: cls });
    dev.add();
    expect(sysfs.exists(`${dev.path}/uevent`)).toBe(true);
    const ops: MdevParentOps = {
      supportedTypeGroups: [{ name: '1', attrs: [] }],
      devAttrGroups: [
        { attrs: [{ name: 'vendor_ok', mode: 0o444, show: () => 'x' }] },
        { attrs: [{ name: 'uevent', mode: 0o444, show: () => 'clash' }] },
      ],
      create: () => {},
      remove: () => {},
    };
    expect(code(() => mdevRegisterDevice(dev, ops, bus))).not.toBe('ok');
    expect(sysfs.exists(`${dev.path}/uevent`)).toBe(true); // the parent's own file survives
    expect(sysfs.exists(`${dev.path}/vendor_ok`)).toBe(false);
    expect(sysfs.exists(`${dev.path}/mdev_supported_types`)).toBe(false);
    dev.unregister();
  });

  it('refuses creates while the parent goes away', () => {
    let inner = '';
    const { dev, cleanup } = testParent('pd', {
      remove: () => {
        inner = code(() => mdevDeviceCreate(dev, '1', U2));
      },
    });
    mdevDeviceCreate(dev, '1', U1);
    mdevUnregisterDevice(dev);
    expect(inner).toBe('ENODEV');
    cleanup();
  });
});

describe('ordering (mdev_device_create, mdev_device_remove in mdev_core.c)', () => {
  it('runs vendor create before device_add and unwinds a failed add', () => {
    const { dev, cleanup } = testParent();
    const drv = mdevRegisterDriver(
      {
        name: 'probe_logger',
        probe: (m) => {
          log.push(
            `probe ${m.uuid} drvdata=${JSON.stringify(mdevGetDrvdata(m))} group=${m.iommuGroup}`,
          );
        },
        remove: (m) => log.push(`driver remove ${m.uuid}`),
      },
      bus,
    );
    const mdev = mdevDeviceCreate(dev, '1', U1);
    expect(sysfs.exists(`${mdev.path}/iommu_group`)).toBe(true);
    mdevDeviceRemove(mdev);
    expect(log[0]).toBe(`create mtest-1 ${U1} added=false`);
    expect(log[1]).toMatch(new RegExp(`^probe ${U1} drvdata=\\{"type":"mtest-1"\\} group=\\d+$`));
    expect(log.slice(2)).toEqual([`driver remove ${U1}`, `remove ${U1} added=false`]);
    drv.unregister();

    // A name clash at device_add: the vendor's remove runs, the UUID is freed.
    log = [];
    const clash = new Device({ name: U2, parent: dev });
    clash.add();
    expect(code(() => mdevDeviceCreate(dev, '1', U2))).toBe('EEXIST');
    expect(log).toEqual([`create mtest-1 ${U2} added=false`, `remove ${U2} added=false`]);
    expect(mdevReservedUuids()).toEqual([]);
    clash.del();
    cleanup();
  });

  it('emits the uevent sequence of registration, create, remove and unregistration', () => {
    const events: Uevent[] = [];
    const stop = uevents.subscribe((e) => events.push(e));
    const { dev, cleanup } = testParent();
    const mdev = mdevDeviceCreate(dev, '2', U1);
    mdevUnregisterDevice(dev);
    stop();
    const seen = events.map((e) =>
      `${e.action} ${e.devpath.split('/').pop()} ${e.env.MDEV_STATE ?? ''}`.trim(),
    );
    expect(seen).toEqual([
      'add mtest',
      'change mtest registered',
      `add ${U1}`,
      `remove ${U1}`,
      'change mtest unregistered',
    ]);
    expect(mdev.isAdded).toBe(false);
    cleanup();
  });
});

describe('IOMMU groups', () => {
  it('hands freed group ids out again and leaves no group behind a failed probe', () => {
    const { dev, cleanup } = testParent();
    let fail = false;
    const drv = mdevRegisterDriver(
      {
        name: 'grouped',
        probe: () => {
          if (fail) throw new KernelError('EIO', 'probe failed');
        },
      },
      bus,
    );
    const a = mdevDeviceCreate(dev, '1', U1);
    const first = a.iommuGroup!;
    expect(sysfs.exists(`/sys/kernel/iommu_groups/${first}/devices/${U1}`)).toBe(true);
    mdevDeviceRemove(a);
    expect(sysfs.exists(`/sys/kernel/iommu_groups/${first}`)).toBe(false);
    const b = mdevDeviceCreate(dev, '1', U2);
    expect(b.iommuGroup).toBe(first); // the lowest free id again
    mdevDeviceRemove(b);
    fail = true;
    const groupsBefore = sysfs.exists('/sys/kernel/iommu_groups')
      ? sysfs.list('/sys/kernel/iommu_groups')
      : [];
    const c = mdevDeviceCreate(dev, '1', U1);
    expect(c.driver).toBeNull();
    expect(c.iommuGroup).toBeNull();
    const groupsAfter = sysfs.exists('/sys/kernel/iommu_groups')
      ? sysfs.list('/sys/kernel/iommu_groups')
      : [];
    expect(groupsAfter).toEqual(groupsBefore);
    mdevDeviceRemove(c);
    drv.unregister();
    cleanup();
  });
});

describe('randomized interleaving', () => {
  it('leaves no device, no reserved UUID and no stray sysfs node', () => {
    const before = sysfs.tree('/sys');
    const uuids = Array.from({ length: 6 }, (_, i) => `00000000-0000-0000-0000-00000000000${i}`);
    const op = fc.oneof(
      fc.record({
        k: fc.constant('create' as const),
        p: fc.nat(2),
        u: fc.nat(5),
        t: fc.constantFrom('1', '2'),
      }),
      fc.record({ k: fc.constant('remove' as const), u: fc.nat(5) }),
      fc.record({ k: fc.constant('unregister' as const), p: fc.nat(2) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const parents = [0, 1, 2].map((i) => testParent(`rp${i}`));
        const live = [true, true, true];
        for (const o of ops) {
          if (o.k === 'create') {
            const r = code(() => mdevDeviceCreate(parents[o.p]!.dev, o.t, uuids[o.u]!));
            const taken = mdevDevices().some((m) => m.uuid === uuids[o.u] && m !== undefined);
            if (!live[o.p]) expect(['ENODEV', 'EEXIST']).toContain(r);
            else expect(r === 'ok' || (r === 'EEXIST' && taken)).toBe(true);
          } else if (o.k === 'remove') {
            const m = mdevDevices().find((d) => d.uuid === uuids[o.u]);
            if (m) mdevDeviceRemove(m);
          } else if (live[o.p]) {
            mdevUnregisterDevice(parents[o.p]!.dev);
            live[o.p] = false;
          }
          for (const m of mdevDevices()) expect(m).toBeInstanceOf(MdevDevice);
        }
        for (const p of parents) p.cleanup();
        expect(mdevDevices()).toEqual([]);
        expect(mdevReservedUuids()).toEqual([]);
        // The mdev_bus class stays while the bus is registered; its links must be gone.
        const stable = (p: string) =>
          !p.startsWith('/sys/kernel/iommu_groups') && p !== '/sys/class/mdev_bus';
        expect(sysfs.tree('/sys').filter(stable)).toEqual(before.filter(stable));
      }),
      { seed: 20191118, numRuns: 150 },
    );
  });
});

describe('kstrtoul and the remove file', () => {
  it('parses as lib/kstrtox.c does', () => {
    expect(kstrtoul('1')).toBe(1n);
    expect(kstrtoul('+1\n')).toBe(1n);
    expect(kstrtoul('010')).toBe(8n);
    expect(kstrtoul('0x1F')).toBe(31n);
    expect(kstrtoul('18446744073709551615')).toBe(0xffff_ffff_ffff_ffffn);
    expect(kstrtoul(`${'0'.repeat(100)}7`)).toBe(7n);
    for (const bad of ['', '\n', '0x', '08', '1\n\n', ' 1', '-1', '1 ', '+']) {
      expect(code(() => kstrtoul(bad))).toBe('EINVAL');
    }
    expect(code(() => kstrtoul('18446744073709551616'))).toBe('ERANGE');
    // _kstrtoull() reports the overflow before looking at what follows the digits.
    expect(code(() => kstrtoul('99999999999999999999x'))).toBe('ERANGE');
  });

  it('answers a megabyte of digits in one pass', () => {
    // The value is not built digit by digit: a run longer than 64 bits can hold is ERANGE.
    expect(code(() => kstrtoul('1'.repeat(1 << 20)))).toBe('ERANGE');
    expect(code(() => kstrtoul(`0x${'f'.repeat(1 << 20)}`))).toBe('ERANGE');
    expect(kstrtoul(`${'0'.repeat(1 << 20)}1\n`)).toBe(1n);
  });

  it('refuses a megabyte written to remove with EINVAL and keeps the device', () => {
    const { dev, cleanup } = testParent();
    const mdev = mdevDeviceCreate(dev, '1', U1);
    const remove = `/sys/bus/mdev/devices/${U1}/remove`;
    expect(code(() => sysfs.write(remove, '1'.repeat(1 << 20)))).toBe('EINVAL');
    expect(mdev.isAdded).toBe(true);
    // Only the first page reaches the store: a page of zeros is a valid 0 (nothing removed).
    expect(sysfs.write(remove, '0'.repeat(1 << 20))).toBe(4096);
    expect(mdev.isAdded).toBe(true);
    expect(sysfs.write(remove, '1\n')).toBe(2);
    expect(mdev.isAdded).toBe(false);
    cleanup();
  });
});

describe('the bus, IOMMU groups and IOMMU devices', () => {
  it('refuses to unregister a bus with a parent or an mdev on it', () => {
    const { dev, cleanup } = testParent();
    const mdev = mdevDeviceCreate(dev, '1', U1);
    expect(code(() => mdevUnregisterBus(bus))).toBe('EBUSY');
    expect(bus.isRegistered).toBe(true);
    expect(mdev.isAdded).toBe(true);
    expect(mdevReservedUuids()).toEqual([U1]);
    mdevDeviceRemove(mdev);
    expect(code(() => mdevUnregisterBus(bus))).toBe('EBUSY'); // the parent is still registered
    cleanup();
    expect(log.filter((l) => l.startsWith('remove'))).toEqual([`remove ${U1} added=false`]);
    mdevUnregisterBus(bus);
    expect(bus.isRegistered).toBe(false);
    mdevRegisterBus(bus); // for afterEach
  });

  it('numbers IOMMU groups from 0, as iommu_group_alloc() does', () => {
    const { dev, cleanup } = testParent();
    const drv = mdevRegisterDriver({ name: 'grouped' }, bus);
    const a = mdevDeviceCreate(dev, '1', U1);
    expect(a.iommuGroup).toBe(0);
    expect(sysfs.readlink(`${a.path}/iommu_group`)).toBe('/sys/kernel/iommu_groups/0');
    const b = mdevDeviceCreate(dev, '1', U2);
    expect(b.iommuGroup).toBe(1);
    drv.unregister();
    cleanup();
  });

  it('keeps the IOMMU device a parent sets (mdev_set_iommu_device)', () => {
    const { dev, cleanup } = testParent();
    const mdev = mdevDeviceCreate(dev, '1', U1);
    expect(mdevGetIommuDevice(mdev)).toBeNull();
    mdevSetIommuDevice(mdev, dev);
    expect(mdevGetIommuDevice(mdev)).toBe(dev);
    mdevSetIommuDevice(mdev, null);
    expect(mdevGetIommuDevice(mdev)).toBeNull();
    expect(code(() => mdevSetIommuDevice(dev, dev))).toBe('EINVAL');
    expect(code(() => mdevGetIommuDevice(dev))).toBe('EINVAL');
    cleanup();
  });
});

describe('uevent listeners that unload everything', () => {
  for (const action of ['add', 'bind', 'remove'] as const) {
    it(`leave nothing behind when they act on ${action}`, () => {
      const drv = mdevRegisterDriver({ name: 'mtest_drv' }, bus);
      const { dev } = testParent();
      let fired = 0;
      const stop = uevents.subscribe((e) => {
        if (e.action !== action || !e.devpath.endsWith(U1) || fired++) return;
        // The module exit of the vendor and of the bus, from inside the listener.
        mdevUnregisterDevice(dev);
        dev.unregister();
        drv.unregister();
        mdevUnregisterBus(bus);
        cls.unregister();
      });
      try {
        const mdev = mdevDeviceCreate(dev, '1', U1);
        if (action === 'remove') mdevDeviceRemove(mdev);
        expect(fired).toBe(1);
        expect(mdev.isAdded).toBe(false);
        expect(mdevReservedUuids()).toEqual([]);
        expect(mdevDevices()).toEqual([]);
        expect(log).toEqual([`create mtest-1 ${U1} added=false`, `remove ${U1} added=false`]);
        expect(sysfs.exists('/sys/class/mdev_bus')).toBe(false);
        expect(sysfs.exists('/sys/bus/mdev')).toBe(false);
        expect(sysfs.exists('/sys/kernel/iommu_groups/0')).toBe(false);
      } finally {
        stop();
      }
      // Everything registers again.
      mdevRegisterBus(bus);
      cls.register();
    });
  }
});
