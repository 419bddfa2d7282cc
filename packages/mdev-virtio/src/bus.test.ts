import { Class, Device, KernelError, sysfs, type Uevent, uevents } from '@mdev/driver-core';
import { type MdevDevice, mdevDeviceCreate, mdevDeviceRemove } from '@mdev/mdev-core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  MDEV_VIRTIO_CLASS_ID_VIRTIO,
  MDEV_VIRTIO_MAP_MAX,
  MDEV_VIRTIO_MAP_PAGE,
  MdevVirtioDevice,
  type MdevVirtioMapEntry,
  type MdevVirtioOps,
  mdevVirtioExit,
  mdevVirtioFromDev,
  mdevVirtioGetOps,
  mdevVirtioRegisterDevice,
  mdevVirtioRegisterDriver,
  mdevVirtioSetClassId,
  mdevVirtioSetMap,
  mdevVirtioSetOps,
  mdevVirtioUnregisterDevice,
  mdevVirtioUnregisterDriver,
  VHOST_ACCESS_RW,
  VIRTIO_MDEV_DEVICE_API_STRING,
} from './index';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** Captures process warnings until the test ends, so that they are asserted, not printed. */
function warnings(): string[] {
  const messages: string[] = [];
  const spy = vi.spyOn(process, 'emitWarning').mockImplementation((w: string | Error) => {
    messages.push(typeof w === 'string' ? w : w.message);
  });
  cleanups.push(() => spy.mockRestore());
  return messages;
}

function opsTable(deviceId: number): MdevVirtioOps {
  return {
    setVqAddress() {},
    setVqNum() {},
    kickVq() {},
    setVqCb() {},
    setVqReady() {},
    getVqReady: () => false,
    setVqState() {},
    getVqState: () => 0,
    getVqAlign: () => 4096,
    getFeatures: () => 1n << 32n,
    setFeatures() {},
    setConfigCb() {},
    getVqNumMax: () => 256,
    getDeviceId: () => deviceId,
    getVendorId: () => 0,
    getStatus: () => 0,
    setStatus() {},
    getConfig() {},
    setConfig() {},
  };
}

function parent(classIdFor: (type: string) => number) {
  const cls = new Class('vparent');
  cls.register();
  const dev = new Device({ name: 'vparent', class: cls });
  dev.add();
  mdevVirtioRegisterDevice(dev, {
    supportedTypeGroups: [
      { name: 'virtio', attrs: [] },
      { name: 'unclassed', attrs: [] },
    ],
    create(type, mdev) {
      mdevVirtioSetOps(mdev, opsTable(1));
      mdevVirtioSetClassId(mdev, classIdFor(type.group.name));
    },
    remove() {},
  });
  cleanups.push(() => {
    mdevVirtioUnregisterDevice(dev);
    dev.unregister();
    cls.unregister();
    mdevVirtioExit();
  });
  return dev;
}

it('binds drivers by class id and sends MODALIAS=mdev_virtio:c01', () => {
  const warned = warnings();
  const dev = parent((t) => (t === 'virtio' ? MDEV_VIRTIO_CLASS_ID_VIRTIO : 0));
  const probed: string[] = [];
  const drv = mdevVirtioRegisterDriver({
    name: 'virtio_test',
    idTable: [{ id: MDEV_VIRTIO_CLASS_ID_VIRTIO }],
    probe: (m) => probed.push(`${m.uuid} device ${mdevVirtioGetOps(m).getDeviceId(m)}`),
  });
  cleanups.push(() => drv.unregister());
  const events: Uevent[] = [];
  cleanups.push(uevents.subscribe((e) => events.push(e)));

  const a = mdevDeviceCreate(dev, 'virtio', '00000000-0000-0000-0000-0000000000a1');
  const b = mdevDeviceCreate(dev, 'unclassed', '00000000-0000-0000-0000-0000000000b1');
  expect(a).toBeInstanceOf(MdevVirtioDevice);
  expect(mdevVirtioFromDev(a)).toBe(a);
  expect(a.driver?.name).toBe('virtio_test');
  expect(b.driver).toBeNull();
  expect(probed).toEqual(['00000000-0000-0000-0000-0000000000a1 device 1']);
  const add = events.find((e) => e.action === 'add' && e.devpath.endsWith('a1'))!;
  expect(add.env.MODALIAS).toBe('mdev_virtio:c01');
  expect(add.subsystem).toBe('mdev_virtio');
  expect(
    sysfs.readlink('/sys/bus/mdev_virtio/devices/00000000-0000-0000-0000-0000000000a1/driver'),
  ).toBe('/sys/bus/mdev_virtio/drivers/virtio_test');
  expect(sysfs.exists('/sys/class/mdev_virtio_bus/vparent')).toBe(true);
  expect(warned).toEqual([
    'mdev_virtio: 00000000-0000-0000-0000-0000000000b1 has no class id; it stays unbound',
  ]);
  mdevDeviceRemove(a as MdevDevice);
  mdevDeviceRemove(b as MdevDevice);
});

it('binds devices that exist before the driver registers', () => {
  const dev = parent(() => MDEV_VIRTIO_CLASS_ID_VIRTIO);
  const m = mdevDeviceCreate(dev, 'virtio', '00000000-0000-0000-0000-0000000000c1');
  expect(m.driver).toBeNull();
  const drv = mdevVirtioRegisterDriver({ name: 'late', idTable: [{ id: 1 }] });
  cleanups.push(() => drv.unregister());
  expect(m.driver).toBe(drv);
  mdevDeviceRemove(m);
});

it('moves an mdev to another driver by hand: unbind, driver_override, drivers_probe', () => {
  const dev = parent(() => MDEV_VIRTIO_CLASS_ID_VIRTIO);
  const calls: string[] = [];
  const [a, b] = ['drv_a', 'drv_b'].map((name) => {
    const drv = mdevVirtioRegisterDriver({
      name,
      idTable: [{ id: MDEV_VIRTIO_CLASS_ID_VIRTIO }],
      probe: (m) => calls.push(`probe ${name} ${m.uuid}`),
      remove: (m) => calls.push(`remove ${name} ${m.uuid}`),
    });
    cleanups.push(() => drv.unregister());
    return drv;
  });
  const uuid = '00000000-0000-0000-0000-0000000000d1';
  const m = mdevDeviceCreate(dev, 'virtio', uuid);
  expect(m.driver).toBe(a);
  const events: Uevent[] = [];
  cleanups.push(uevents.subscribe((e) => events.push(e)));
  const devDir = `/sys/bus/mdev_virtio/devices/${uuid}`;
  expect(sysfs.read(`${devDir}/driver_override`)).toBe('(null)\n');
  sysfs.write('/sys/bus/mdev_virtio/drivers/drv_a/unbind', `${uuid}\n`);
  sysfs.write(`${devDir}/driver_override`, 'drv_b\n');
  sysfs.write('/sys/bus/mdev_virtio/drivers_probe', `${uuid}\n`);
  expect(m.driver).toBe(b);
  expect(sysfs.readlink(`${devDir}/driver`)).toBe('/sys/bus/mdev_virtio/drivers/drv_b');
  expect(calls).toEqual([`probe drv_a ${uuid}`, `remove drv_a ${uuid}`, `probe drv_b ${uuid}`]);
  expect(events.map((e) => `${e.action} ${e.env.DRIVER}`)).toEqual([
    'unbind undefined',
    'bind drv_b',
  ]);
  // drv_a may not take it back while the override names drv_b.
  sysfs.write('/sys/bus/mdev_virtio/drivers/drv_b/unbind', uuid);
  try {
    sysfs.write('/sys/bus/mdev_virtio/drivers/drv_a/bind', uuid);
    expect.unreachable('bind succeeded');
  } catch (err) {
    expect(KernelError.is(err, 'ENODEV')).toBe(true);
  }
  mdevDeviceRemove(m);
});

it('refuses an incomplete ops table with EINVAL and fails create', () => {
  const cls = new Class('bad');
  cls.register();
  const dev = new Device({ name: 'bad', class: cls });
  dev.add();
  mdevVirtioRegisterDevice(dev, {
    supportedTypeGroups: [{ name: 'virtio', attrs: [] }],
    create(_t, mdev) {
      const { kickVq: _, ...partial } = opsTable(1);
      mdevVirtioSetOps(mdev, partial as MdevVirtioOps);
    },
    remove() {},
  });
  cleanups.push(() => {
    mdevVirtioUnregisterDevice(dev);
    dev.unregister();
    cls.unregister();
    mdevVirtioExit();
  });
  let err: unknown;
  try {
    mdevDeviceCreate(dev, 'virtio', '00000000-0000-0000-0000-0000000000d1');
  } catch (e) {
    err = e;
  }
  expect(KernelError.is(err, 'EINVAL')).toBe(true);
});

it('leaves a device whose class id no driver lists unbound, with its MODALIAS', () => {
  const dev = parent(() => 0x2a);
  const drv = mdevVirtioRegisterDriver({ name: 'virtio_only', idTable: [{ id: 1 }] });
  cleanups.push(() => drv.unregister());
  const events: Uevent[] = [];
  cleanups.push(uevents.subscribe((e) => events.push(e)));
  const m = mdevDeviceCreate(dev, 'virtio', '00000000-0000-0000-0000-0000000000e1');
  expect(m.driver).toBeNull();
  const add = events.find((e) => e.action === 'add' && e.devpath.endsWith('e1'))!;
  expect(add.env.MODALIAS).toBe('mdev_virtio:c2A');
  mdevDeviceRemove(m);
});

it('refuses a class id that is not a u16 with EINVAL, failing create', () => {
  const dev = parent(() => 0x10000);
  let err: unknown;
  try {
    mdevDeviceCreate(dev, 'virtio', '00000000-0000-0000-0000-0000000000e2');
  } catch (e) {
    err = e;
  }
  expect(KernelError.is(err, 'EINVAL')).toBe(true);
  expect(sysfs.exists('/sys/bus/mdev_virtio/devices/00000000-0000-0000-0000-0000000000e2')).toBe(
    false,
  );
});

it('warns once about a device without a class id, however many drivers look at it', () => {
  const dev = parent(() => 0);
  const warned = warnings();
  const m = mdevDeviceCreate(dev, 'unclassed', '00000000-0000-0000-0000-0000000000e3');
  for (const name of ['first', 'second', 'third']) {
    const drv = mdevVirtioRegisterDriver({ name, idTable: [{ id: 1 }] });
    cleanups.push(() => drv.unregister());
  }
  expect(m.driver).toBeNull();
  mdevDeviceRemove(m);
  expect(warned).toEqual([
    'mdev_virtio: 00000000-0000-0000-0000-0000000000e3 has no class id; it stays unbound',
  ]);
});

it('refuses to unregister the bus while an mdev or a driver is on it (EBUSY)', () => {
  const dev = parent(() => MDEV_VIRTIO_CLASS_ID_VIRTIO);
  const m = mdevDeviceCreate(dev, 'virtio', '00000000-0000-0000-0000-0000000000e4');
  const drv = mdevVirtioRegisterDriver({ name: 'busy', idTable: [{ id: 1 }] });
  let err: unknown;
  try {
    mdevVirtioExit();
  } catch (e) {
    err = e;
  }
  expect(KernelError.is(err, 'EBUSY')).toBe(true);
  // Nothing was torn down: the mdev is still bound and its UUID taken.
  expect(m.driver).toBe(drv);
  expect(sysfs.exists('/sys/bus/mdev_virtio/devices/00000000-0000-0000-0000-0000000000e4')).toBe(
    true,
  );
  mdevDeviceRemove(m);
  drv.unregister();
  // The parent is still registered: its module uses the bus's, which cannot unload yet.
  err = undefined;
  try {
    mdevVirtioExit();
  } catch (e) {
    err = e;
  }
  expect(KernelError.is(err, 'EBUSY')).toBe(true);
  cleanups.pop()!(); // the parent goes, then the bus
  expect(sysfs.exists('/sys/bus/mdev_virtio')).toBe(false);
});

it('reads an id table up to its { id: 0 } terminator', () => {
  const dev = parent(() => MDEV_VIRTIO_CLASS_ID_VIRTIO);
  const m = mdevDeviceCreate(dev, 'virtio', '00000000-0000-0000-0000-0000000000f1');
  const ended = mdevVirtioRegisterDriver({
    name: 'ended',
    idTable: [{ id: 0x2a }, { id: 0 }, { id: MDEV_VIRTIO_CLASS_ID_VIRTIO }],
  });
  cleanups.push(() => ended.unregister());
  expect(m.driver).toBeNull();
  const listed = mdevVirtioRegisterDriver({
    name: 'listed',
    idTable: [{ id: MDEV_VIRTIO_CLASS_ID_VIRTIO }, { id: 0 }],
  });
  cleanups.push(() => listed.unregister());
  expect(m.driver).toBe(listed);
  mdevDeviceRemove(m);
});

it('names the device_api of its types', () => {
  expect(VIRTIO_MDEV_DEVICE_API_STRING).toBe('virtio-mdev');
});

for (const action of ['add', 'bind', 'unbind', 'remove'] as const) {
  it(`lets a ${action} listener exit the driver, the parent and the bus`, () => {
    const cls = new Class('vunload');
    cls.register();
    const dev = new Device({ name: 'vunload', class: cls });
    dev.add();
    const removed: string[] = [];
    const driverRemoved: string[] = [];
    mdevVirtioRegisterDevice(dev, {
      supportedTypeGroups: [{ name: 'virtio', attrs: [] }],
      create(_t, mdev) {
        mdevVirtioSetOps(mdev, opsTable(1));
        mdevVirtioSetClassId(mdev, MDEV_VIRTIO_CLASS_ID_VIRTIO);
      },
      remove: (m) => removed.push(m.uuid),
    });
    const drv = mdevVirtioRegisterDriver({
      name: 'vunload_drv',
      idTable: [{ id: MDEV_VIRTIO_CLASS_ID_VIRTIO }, { id: 0 }],
      remove: (m) => driverRemoved.push(m.uuid),
    });
    const uuid = '00000000-0000-0000-0000-0000000000f2';
    let fired = 0;
    const stop = uevents.subscribe((e) => {
      if (e.action !== action || !e.devpath.endsWith(uuid) || fired++) return;
      // The transport's module exit, then the vendor's, then the bus's.
      mdevVirtioUnregisterDriver(drv);
      mdevVirtioUnregisterDevice(dev);
      dev.unregister();
      cls.unregister();
      mdevVirtioExit();
    });
    try {
      const m = mdevDeviceCreate(dev, 'virtio', uuid);
      if (action === 'unbind' || action === 'remove') mdevDeviceRemove(m);
      expect(fired).toBe(1);
      expect(driverRemoved).toEqual([uuid]);
      expect(removed).toEqual([uuid]);
      expect(m.isAdded).toBe(false);
      expect(sysfs.exists('/sys/bus/mdev_virtio')).toBe(false);
      expect(sysfs.exists('/sys/class/vunload')).toBe(false);
    } finally {
      stop();
    }
    const again = new Class('vunload');
    again.register();
    again.unregister();
  });
}

describe('mdevVirtioSetMap', () => {
  const PAGE = MDEV_VIRTIO_MAP_PAGE;
  const region = { u8: new Uint8Array(4 * PAGE) };
  const entry = (iova: number, size = PAGE, extra: object = {}) => ({
    iova,
    size,
    region,
    offset: 0,
    perm: VHOST_ACCESS_RW,
    ...extra,
  });

  /** A parent whose `mapped` type has set_map (recording what it is given), `plain` has not. */
  function mapParent() {
    const got: (readonly MdevVirtioMapEntry[] | null)[] = [];
    const cls = new Class('mparent');
    cls.register();
    const dev = new Device({ name: 'mparent', class: cls });
    dev.add();
    mdevVirtioRegisterDevice(dev, {
      supportedTypeGroups: [
        { name: 'mapped', attrs: [] },
        { name: 'plain', attrs: [] },
      ],
      create(type, mdev) {
        const ops = opsTable(1);
        if (type.group.name === 'mapped') ops.setMap = (_m, map) => got.push(map);
        mdevVirtioSetOps(mdev, ops);
        mdevVirtioSetClassId(mdev, MDEV_VIRTIO_CLASS_ID_VIRTIO);
      },
      remove() {},
    });
    cleanups.push(() => {
      mdevVirtioUnregisterDevice(dev);
      dev.unregister();
      cls.unregister();
      mdevVirtioExit();
    });
    const mapped = mdevDeviceCreate(dev, 'mapped', '00000000-0000-0000-0000-0000000000e1');
    const plain = mdevDeviceCreate(dev, 'plain', '00000000-0000-0000-0000-0000000000e2');
    return { got, mapped, plain };
  }

  function code(f: () => void): string | undefined {
    try {
      f();
    } catch (err) {
      expect(err).toBeInstanceOf(KernelError);
      return (err as KernelError).code;
    }
    return undefined;
  }

  it('hands the device a frozen copy sorted by IOVA, and null to clear it', () => {
    const { got, mapped } = mapParent();
    const table = [entry(8 * PAGE, 2 * PAGE, { offset: 2 * PAGE }), entry(0, PAGE)];
    mdevVirtioSetMap(mapped, table);
    table[0]!.iova = 1; // the caller's table is not the device's
    expect(got).toHaveLength(1);
    expect(got[0]!.map((e) => [e.iova, e.size, e.offset])).toEqual([
      [0, PAGE, 0],
      [8 * PAGE, 2 * PAGE, 2 * PAGE],
    ]);
    expect(Object.isFrozen(got[0]) && Object.isFrozen(got[0]![0])).toBe(true);
    expect(got[0]![0]!.region).toBe(region);
    mdevVirtioSetMap(mapped, []);
    mdevVirtioSetMap(mapped, null);
    expect(got.slice(1)).toEqual([[], null]);
  });

  it('answers EOPNOTSUPP for a device without set_map', () => {
    const { plain } = mapParent();
    expect(code(() => mdevVirtioSetMap(plain, [entry(0)]))).toBe('EOPNOTSUPP');
    expect(code(() => mdevVirtioSetMap(plain, null))).toBe('EOPNOTSUPP');
  });

  it('refuses hostile maps with EINVAL (ENOMEM when too long) and hands the device nothing', () => {
    const { got, mapped } = mapParent();
    const bad: [string, unknown][] = [
      ['not a list', { length: 1, 0: entry(0) }],
      ['not an object', [null]],
      ['no region', [entry(0, PAGE, { region: null })]],
      ['region without bytes', [entry(0, PAGE, { region: { u8: [1, 2] } })]],
      ['negative region fd', [entry(0, PAGE, { region: { u8: new Uint8Array(PAGE), fd: -1 } })]],
      ['string region fd', [entry(0, PAGE, { region: { u8: new Uint8Array(PAGE), fd: '3' } })]],
      ['zero size', [entry(0, 0)]],
      ['negative size', [entry(0, -PAGE)]],
      ['unaligned iova', [entry(1)]],
      ['unaligned size', [entry(0, PAGE + 1)]],
      ['negative iova', [entry(-PAGE)]],
      ['fractional iova', [entry(0.5)]],
      ['NaN iova', [entry(Number.NaN)]],
      ['string iova', [entry('0' as unknown as number)]],
      ['bigint iova', [entry(0n as unknown as number)]],
      ['wrapping', [entry(2 ** 53 - PAGE, 2 * PAGE)]],
      ['beyond its region', [entry(0, 5 * PAGE)]],
      ['offset beyond its region', [entry(0, PAGE, { offset: 4 * PAGE })]],
      ['negative offset', [entry(0, PAGE, { offset: -1 })]],
      ['no access', [entry(0, PAGE, { perm: 0 })]],
      ['unknown access', [entry(0, PAGE, { perm: 4 })]],
      ['same range twice', [entry(0), entry(0)]],
      ['overlapping', [entry(PAGE, 2 * PAGE), entry(0, 2 * PAGE)]],
    ];
    for (const [why, map] of bad) {
      expect([why, code(() => mdevVirtioSetMap(mapped, map as MdevVirtioMapEntry[]))]).toEqual([
        why,
        'EINVAL',
      ]);
    }
    const tooMany = Array.from({ length: MDEV_VIRTIO_MAP_MAX + 1 }, (_, i) => entry(i * PAGE));
    expect(code(() => mdevVirtioSetMap(mapped, tooMany))).toBe('ENOMEM');
    expect(got).toEqual([]);
    // Adjacent ranges do not overlap.
    mdevVirtioSetMap(mapped, [entry(PAGE), entry(0)]);
    expect(got).toHaveLength(1);
  });
});
