import { Bus, Class, Device } from '@mdev/driver-core';
import { afterEach, expect, it } from 'vitest';
import {
  MdevDevice,
  type MdevDeviceInit,
  mdevDeviceCreate,
  mdevFromDev,
  mdevProbe,
  mdevRegisterBus,
  mdevRegisterDevice,
  mdevRegisterDriver,
  mdevRemove,
  mdevUnregisterBus,
  mdevUnregisterDevice,
} from './index';

/** A bus's own mdev type carrying bus-specific ops and a class id (V12 patch 2). */
class ClassedMdev extends MdevDevice {
  classId = 0;
  ops: { hello(): string } | null = null;
  constructor(init: MdevDeviceInit) {
    super(init);
  }
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

it('lets the bus supply the concrete device type, set up in the vendor create', () => {
  const bus = new Bus({
    name: 'mdev_classed',
    probe: mdevProbe,
    remove: mdevRemove,
    match: (dev) => dev instanceof ClassedMdev && dev.classId === 1,
    uevent: (dev, env) => {
      env.MODALIAS = `mdev_classed:c${(dev as ClassedMdev).classId.toString(16).padStart(2, '0').toUpperCase()}`;
    },
  });
  mdevRegisterBus(bus);
  cleanups.push(() => mdevUnregisterBus(bus));
  const cls = new Class('classed');
  cls.register();
  cleanups.push(() => cls.unregister());
  const parent = new Device({ name: 'classed', class: cls });
  parent.add();
  cleanups.push(() => parent.unregister());
  mdevRegisterDevice(
    parent,
    {
      supportedTypeGroups: [
        { name: 'one', attrs: [] },
        { name: 'none', attrs: [] },
      ],
      create: (type, mdev) => {
        const m = mdev as ClassedMdev;
        if (type.group.name === 'one') m.classId = 1;
        m.ops = { hello: () => `hello from ${m.uuid}` };
      },
      remove: () => {},
    },
    bus,
    (init) => new ClassedMdev(init),
  );
  cleanups.push(() => mdevUnregisterDevice(parent));
  const probed: string[] = [];
  const drv = mdevRegisterDriver(
    { name: 'classed_drv', probe: (m) => probed.push((m as ClassedMdev).ops!.hello()) },
    bus,
  );
  cleanups.push(() => drv.unregister());

  const a = mdevDeviceCreate(parent, 'one', '00000000-0000-0000-0000-00000000000a');
  const b = mdevDeviceCreate(parent, 'none', '00000000-0000-0000-0000-00000000000b');
  expect(a).toBeInstanceOf(ClassedMdev);
  expect(mdevFromDev(a, bus)).toBe(a);
  expect(a.driver).toBe(drv);
  expect(b.driver).toBeNull(); // class id 0 matches no driver: it stays unbound
  expect(probed).toEqual(['hello from 00000000-0000-0000-0000-00000000000a']);
});
