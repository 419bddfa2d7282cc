import { nextTurn, sleep } from '@mdev/test-utils';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Bus, Class, ClassCompat, Device, Driver } from './device';
import { ERRNO, KernelError } from './errors';
import { SYSFS_PAGE_SIZE, sysfs } from './sysfs';
import { type Uevent, uevents } from './uevent';
import { registerIrqPoll, Work, Workqueue } from './workqueue';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function expectCode(fn: () => unknown, code: keyof typeof ERRNO) {
  try {
    fn();
  } catch (err) {
    expect(KernelError.is(err, code)).toBe(true);
    expect((err as KernelError).errno).toBe(-ERRNO[code]);
    return;
  }
  throw new Error(`expected ${code}`);
}

/**
 * Captures the messages of process warnings until the test ends, so that the warnings a test
 * provokes are asserted instead of printed.
 */
function warnings(): string[] {
  const messages: string[] = [];
  const spy = vi.spyOn(process, 'emitWarning').mockImplementation((w: string | Error) => {
    messages.push(typeof w === 'string' ? w : w.message);
  });
  cleanups.push(() => spy.mockRestore());
  return messages;
}

function record(): Uevent[] {
  const events: Uevent[] = [];
  cleanups.push(uevents.subscribe((e) => events.push(e)));
  return events;
}

describe('KernelError', () => {
  it('has the shape of a Node system error', () => {
    const err = new KernelError('EEXIST', 'create: mdev 1 already exists');
    expect(err.code).toBe('EEXIST');
    expect(err.errno).toBe(-17);
    expect(err).toBeInstanceOf(Error);
    expect(KernelError.fromErrno(-22, 'x').code).toBe('EINVAL');
  });

  it('is recognised across two copies of the package', async () => {
    // A second instance of the module, as a second installed copy of driver-core would be.
    const specifier = './errors.ts?second-copy';
    const copy = (await import(/* @vite-ignore */ specifier)) as typeof import('./errors');
    expect(copy.KernelError).not.toBe(KernelError);
    const theirs = new copy.KernelError('EBUSY', 'from the other copy');
    expect(KernelError.is(theirs)).toBe(true);
    expect(KernelError.is(theirs, 'EBUSY')).toBe(true);
    expect(KernelError.is(theirs, 'EINVAL')).toBe(false);
    expect(theirs instanceof KernelError).toBe(true);
    expect(copy.KernelError.is(new KernelError('ENODEV', 'ours'), 'ENODEV')).toBe(true);
    expect(KernelError.is(new Error('plain'))).toBe(false);
    expect(KernelError.is({ code: 'EBUSY' })).toBe(false);
    expect(KernelError.is(null)).toBe(false);
  });
});

describe('sysfs', () => {
  it('enforces file modes and reports the store errno', () => {
    sysfs.mkdir('/sys/test/a');
    cleanups.push(() => sysfs.remove('/sys/test'));
    let stored = '';
    sysfs.createFile('/sys/test/a', { name: 'ro', mode: 0o444, show: () => 'hello' });
    sysfs.createFile('/sys/test/a', {
      name: 'wo',
      mode: 0o200,
      store: (t) => {
        if (t.trim() === 'bad') throw new KernelError('EINVAL', 'bad value');
        stored = t;
        return undefined;
      },
    });
    expect(sysfs.read('/sys/test/a/ro')).toBe('hello\n');
    expectCode(() => sysfs.write('/sys/test/a/ro', '1'), 'EACCES');
    expectCode(() => sysfs.read('/sys/test/a/wo'), 'EACCES');
    expect(sysfs.write('/sys/test/a/wo', 'abc\n')).toBe(4);
    expect(stored).toBe('abc\n');
    expectCode(() => sysfs.write('/sys/test/a/wo', 'bad\n'), 'EINVAL');
    expectCode(() => sysfs.read('/sys/test/a/none'), 'ENOENT');
    expect(sysfs.list('/sys/test/a')).toEqual(['ro', 'wo']);
  });

  it('hands a store at most one page, as kernfs does for sysfs files', () => {
    sysfs.mkdir('/sys/test/a');
    cleanups.push(() => sysfs.remove('/sys/test'));
    const seen: number[] = [];
    sysfs.createFile('/sys/test/a', {
      name: 'wo',
      mode: 0o200,
      store: (t) => {
        seen.push(Buffer.byteLength(t));
        return undefined;
      },
    });
    // fs/kernfs/file.c: without atomic_write_len the write is cut to PAGE_SIZE (a short write).
    expect(sysfs.write('/sys/test/a/wo', 'x'.repeat(SYSFS_PAGE_SIZE))).toBe(SYSFS_PAGE_SIZE);
    expect(sysfs.write('/sys/test/a/wo', '1'.repeat(1 << 20))).toBe(SYSFS_PAGE_SIZE);
    expect(seen).toEqual([SYSFS_PAGE_SIZE, SYSFS_PAGE_SIZE]);
    // An empty write does not reach the store (sysfs_kf_write returns 0 for count 0).
    expect(sysfs.write('/sys/test/a/wo', '')).toBe(0);
    expect(seen).toHaveLength(2);
  });

  it('follows symlinks and reads them back', () => {
    sysfs.mkdir('/sys/test/target');
    cleanups.push(() => sysfs.remove('/sys/test'));
    sysfs.createFile('/sys/test/target', { name: 'x', mode: 0o444, show: () => '1' });
    sysfs.symlink('/sys/test/link', '/sys/test/target');
    expect(sysfs.readlink('/sys/test/link')).toBe('/sys/test/target');
    expect(sysfs.read('/sys/test/link/x')).toBe('1\n');
    expect(sysfs.stat('/sys/test/link').kind).toBe('link');
    expectCode(() => sysfs.symlink('/sys/test/link', '/sys'), 'EEXIST');
  });
});

describe('bus, driver, device', () => {
  function setup(opts: { probeFails?: boolean } = {}) {
    const calls: string[] = [];
    const bus = new Bus({
      name: 'testbus',
      match: (dev, drv) => dev.name.startsWith(drv.name),
      uevent: (dev, env) => {
        env.MODALIAS = `testbus:${dev.name}`;
      },
    });
    bus.register();
    cleanups.push(() => bus.unregister());
    const drv = new Driver({
      name: 'foo',
      bus,
      probe: (dev) => {
        calls.push(`probe ${dev.name}`);
        if (opts.probeFails) throw new KernelError('ENODEV', 'no');
        dev.drvdata = { bound: dev.name };
      },
      remove: (dev) => calls.push(`remove ${dev.name}`),
    });
    return { bus, drv, calls };
  }

  it('binds on device add and on driver register, with sysfs links and uevents', () => {
    const { bus, drv, calls } = setup();
    const events = record();
    const early = new Device({ name: 'foo0', bus });
    early.add();
    expect(early.driver).toBeNull();
    drv.register();
    expect(early.driver).toBe(drv);
    const late = new Device({ name: 'foo1', bus });
    late.add();
    const other = new Device({ name: 'bar0', bus });
    other.add();
    expect(late.driver).toBe(drv);
    expect(other.driver).toBeNull();
    expect(calls).toEqual(['probe foo0', 'probe foo1']);
    expect(sysfs.readlink('/sys/devices/foo1/driver')).toBe('/sys/bus/testbus/drivers/foo');
    expect(sysfs.readlink('/sys/bus/testbus/devices/foo1')).toBe('/sys/devices/foo1');
    expect(sysfs.readlink('/sys/devices/foo1/subsystem')).toBe('/sys/bus/testbus');
    expect(sysfs.list('/sys/bus/testbus/drivers/foo')).toEqual(['bind', 'foo0', 'foo1', 'unbind']);
    expect(events.map((e) => `${e.action} ${e.devpath}`)).toEqual([
      'add /devices/foo0',
      'bind /devices/foo0',
      'add /devices/foo1',
      'bind /devices/foo1',
      'add /devices/bar0',
    ]);
    expect(events[1]!.env).toMatchObject({ DRIVER: 'foo', MODALIAS: 'testbus:foo0' });
    expect(events.map((e) => e.seqnum)).toEqual(
      [...events.map((e) => e.seqnum)].sort((a, b) => a - b),
    );

    late.del();
    expect(calls.at(-1)).toBe('remove foo1');
    expect(sysfs.exists('/sys/devices/foo1')).toBe(false);
    expect(events.slice(-2).map((e) => e.action)).toEqual(['unbind', 'remove']);
    drv.unregister();
    expect(early.driver).toBeNull();
    expect(early.drvdata).toBeNull();
    early.del();
    other.del();
  });

  it('leaves the device unbound when probe fails', () => {
    const { bus, drv } = setup({ probeFails: true });
    drv.register();
    const dev = new Device({ name: 'foo0', bus });
    dev.add();
    expect(dev.driver).toBeNull();
    expect(KernelError.is(dev.lastProbeError, 'ENODEV')).toBe(true);
    expect(sysfs.exists('/sys/devices/foo0/driver')).toBe(false);
    dev.del();
  });

  it('places children under their parent and releases on the last reference', () => {
    const cls = new Class('testcls');
    cls.register();
    cleanups.push(() => cls.unregister());
    let released = 0;
    const parent = new Device({ name: 'p', class: cls, release: () => released++ });
    parent.add();
    const child = new Device({ name: 'c', parent });
    child.add();
    expect(child.path).toBe('/sys/devices/virtual/testcls/p/c');
    expect(sysfs.readlink('/sys/class/testcls/p')).toBe('/sys/devices/virtual/testcls/p');
    expect(parent.children()).toEqual([child]);
    expectCode(() => new Device({ name: 'c', parent }).add(), 'EEXIST');
    child.del();
    parent.get();
    parent.unregister();
    expect(released).toBe(0);
    parent.put();
    expect(released).toBe(1);
  });

  it('keeps class_compat links', () => {
    const compat = new ClassCompat('testbus_bus');
    cleanups.push(() => compat.unregister());
    const dev = new Device({ name: 'parent0' });
    dev.add();
    compat.createLink(dev);
    expect(sysfs.readlink('/sys/class/testbus_bus/parent0')).toBe(dev.path);
    compat.removeLink(dev);
    expect(sysfs.exists('/sys/class/testbus_bus/parent0')).toBe(false);
    dev.del();
  });

  it("completes the removal when the driver's remove throws", async () => {
    const { bus } = setup();
    const warned = warnings();
    const drv = new Driver({
      name: 'foo',
      bus,
      remove: () => {
        throw new Error('driver broke');
      },
    });
    drv.register();
    const events = record();
    const dev = new Device({ name: 'foo0', bus });
    dev.add();
    expect(dev.driver).toBe(drv);
    // The kernel's remove returns void: the device is unbound and deleted all the same.
    expect(() => dev.del()).not.toThrow();
    expect(dev.driver).toBeNull();
    expect(dev.isAdded).toBe(false);
    expect(sysfs.exists('/sys/devices/foo0')).toBe(false);
    expect(sysfs.exists('/sys/bus/testbus/drivers/foo/foo0')).toBe(false);
    expect(events.map((e) => e.action)).toEqual(['add', 'bind', 'unbind', 'remove']);
    await nextTurn();
    expect(warned).toContain('foo foo0: remove failed: Error: driver broke');
  });

  it('refuses a second bus with the same name', () => {
    const { bus } = setup();
    expectCode(() => new Bus({ name: bus.name }).register(), 'EEXIST');
  });
});

describe('binding by hand (bind, unbind, drivers_probe, driver_override)', () => {
  /**
   * Bus `handbus`: a driver matches the devices whose names start with its own. `refuse` makes
   * bar's probe refuse with ENXIO.
   */
  function setup(opts: { driverOverride?: boolean } = {}) {
    const calls: string[] = [];
    const refuse = { bar: false };
    const bus = new Bus({
      name: 'handbus',
      match: (dev, drv) => dev.name.startsWith(drv.name),
      ...(opts.driverOverride ? { driverOverride: true } : {}),
    });
    bus.register();
    cleanups.push(() => bus.unregister());
    const mk = (name: string) =>
      new Driver({
        name,
        bus,
        probe: (dev) => {
          calls.push(`probe ${name} ${dev.name}`);
          if (name === 'bar' && refuse.bar) throw new KernelError('ENXIO', 'refused');
        },
        remove: (dev) => calls.push(`remove ${name} ${dev.name}`),
      });
    const foo = mk('foo');
    const bar = mk('bar');
    foo.register();
    bar.register();
    const dev = new Device({ name: 'foo0', bus });
    dev.add();
    cleanups.push(() => dev.del());
    return { bus, foo, bar, dev, calls, refuse };
  }

  const FOO = '/sys/bus/handbus/drivers/foo';
  const BAR = '/sys/bus/handbus/drivers/bar';
  const PROBE = '/sys/bus/handbus/drivers_probe';
  const OVERRIDE = '/sys/devices/foo0/driver_override';

  it('offers bind and unbind per driver and drivers_probe per bus, write-only', () => {
    setup();
    for (const path of [`${FOO}/bind`, `${FOO}/unbind`, PROBE]) {
      expect(sysfs.stat(path)).toEqual({ kind: 'file', mode: 0o200 });
      expectCode(() => sysfs.read(path), 'EACCES');
    }
    // Without the bus option, devices have no driver_override.
    expect(sysfs.exists(OVERRIDE)).toBe(false);
  });

  it('unbinds and binds again by name, with UNBIND and BIND uevents', () => {
    const { foo, dev, calls } = setup();
    expect(dev.driver).toBe(foo);
    const events = record();
    expect(sysfs.write(`${FOO}/unbind`, 'foo0\n')).toBe(5);
    expect(dev.driver).toBeNull();
    expect(sysfs.exists('/sys/devices/foo0/driver')).toBe(false);
    expect(sysfs.exists(`${FOO}/foo0`)).toBe(false);
    expect(sysfs.write(`${FOO}/bind`, 'foo0')).toBe(4);
    expect(dev.driver).toBe(foo);
    expect(sysfs.readlink('/sys/devices/foo0/driver')).toBe(FOO);
    expect(calls).toEqual(['probe foo foo0', 'remove foo foo0', 'probe foo foo0']);
    expect(events.map((e) => `${e.action} ${e.devpath} ${e.env.DRIVER}`)).toEqual([
      'unbind /devices/foo0 undefined',
      'bind /devices/foo0 foo',
    ]);
  });

  it('gives the kernel errno for each refused bind and unbind', () => {
    const { foo, dev, calls, refuse } = setup();
    // Bound already: EBUSY from the driver it matches, ENODEV from one it does not match.
    expectCode(() => sysfs.write(`${FOO}/bind`, 'foo0\n'), 'EBUSY');
    expectCode(() => sysfs.write(`${BAR}/bind`, 'foo0\n'), 'ENODEV');
    // Unbinding from a driver it is not bound to, or a name that is not on the bus.
    expectCode(() => sysfs.write(`${BAR}/unbind`, 'foo0\n'), 'ENODEV');
    expectCode(() => sysfs.write(`${FOO}/unbind`, 'foo9\n'), 'ENODEV');
    sysfs.write(`${FOO}/unbind`, 'foo0\n');
    expectCode(() => sysfs.write(`${FOO}/unbind`, 'foo0\n'), 'ENODEV');
    // A driver the bus does not match is ENODEV without a probe.
    expectCode(() => sysfs.write(`${BAR}/bind`, 'foo0\n'), 'ENODEV');
    expect(calls).toEqual(['probe foo foo0', 'remove foo foo0']);
    expect(dev.driver).toBeNull();
    expect(foo.boundDevices()).toEqual([]);
    // A probe that refuses gives its own errno and leaves the device unbound.
    refuse.bar = true;
    const bar0 = new Device({ name: 'bar0', bus: foo.bus });
    bar0.add();
    cleanups.push(() => bar0.del());
    expect(bar0.driver).toBeNull();
    expectCode(() => sysfs.write(`${BAR}/bind`, 'bar0\n'), 'ENXIO');
    expect(bar0.driver).toBeNull();
    expect(sysfs.exists('/sys/devices/bar0/driver')).toBe(false);
  });

  it('compares names as sysfs_streq does and never throws another kind for hostile names', () => {
    const { foo, dev } = setup();
    sysfs.write(`${FOO}/unbind`, 'foo0\0junk');
    expect(dev.driver).toBeNull();
    for (const name of [
      'foo0\n\n',
      ' foo0',
      'foo0 ',
      'FOO0',
      '../foo0',
      '/sys/devices/foo0',
      'devices/foo0',
      '\n',
      '\0',
      'foo',
      '\uD800',
      'x'.repeat(SYSFS_PAGE_SIZE * 3),
    ]) {
      expectCode(() => sysfs.write(`${FOO}/bind`, name), 'ENODEV');
      expectCode(() => sysfs.write(`${FOO}/unbind`, name), 'ENODEV');
      expectCode(() => sysfs.write(PROBE, name), 'ENODEV');
    }
    expect(dev.driver).toBeNull();
    sysfs.write(`${FOO}/bind`, 'foo0\n');
    expect(dev.driver).toBe(foo);
  });

  it('drivers_probe binds an unbound device and succeeds when no driver takes it', () => {
    const { foo, dev, calls } = setup();
    sysfs.write(`${FOO}/unbind`, 'foo0\n');
    const events = record();
    expect(sysfs.write(PROBE, 'foo0\n')).toBe(5);
    expect(dev.driver).toBe(foo);
    expect(events.map((e) => e.action)).toEqual(['bind']);
    // A bound device is left as it is.
    expect(sysfs.write(PROBE, 'foo0\n')).toBe(5);
    expect(calls).toEqual(['probe foo foo0', 'remove foo foo0', 'probe foo foo0']);
    // A device no driver matches stays unbound, and the write is still accepted.
    const baz0 = new Device({ name: 'baz0', bus: foo.bus });
    baz0.add();
    cleanups.push(() => baz0.del());
    expect(sysfs.write(PROBE, 'baz0\n')).toBe(5);
    expect(baz0.driver).toBeNull();
  });

  it('driver_override reads (null), takes a name up to a newline, and clears', () => {
    const { dev } = setup({ driverOverride: true });
    expect(sysfs.stat(OVERRIDE)).toEqual({ kind: 'file', mode: 0o644 });
    expect(sysfs.read(OVERRIDE)).toBe('(null)\n');
    expect(sysfs.write(OVERRIDE, 'bar\n')).toBe(4);
    expect(sysfs.read(OVERRIDE)).toBe('bar\n');
    expect(dev.driverOverride).toBe('bar');
    sysfs.write(OVERRIDE, 'baz\nqux\n');
    expect(sysfs.read(OVERRIDE)).toBe('baz\n');
    sysfs.write(OVERRIDE, 'bar\0junk');
    expect(sysfs.read(OVERRIDE)).toBe('bar\n');
    sysfs.write(OVERRIDE, '\n');
    expect(sysfs.read(OVERRIDE)).toBe('(null)\n');
    sysfs.write(OVERRIDE, 'bar');
    sysfs.write(OVERRIDE, '\0');
    expect(dev.driverOverride).toBeNull();
    // Hostile names are kept as text and match no driver.
    sysfs.write(OVERRIDE, '../../foo\n');
    expect(sysfs.read(OVERRIDE)).toBe('../../foo\n');
  });

  it('driver_override refuses a write of PAGE_SIZE - 1 bytes or more with EINVAL', () => {
    const { dev } = setup({ driverOverride: true });
    const longest = 'b'.repeat(SYSFS_PAGE_SIZE - 2);
    expect(sysfs.write(OVERRIDE, longest)).toBe(SYSFS_PAGE_SIZE - 2);
    expect(dev.driverOverride).toBe(longest);
    expectCode(() => sysfs.write(OVERRIDE, `${longest}\n`), 'EINVAL');
    expectCode(() => sysfs.write(OVERRIDE, 'b'.repeat(SYSFS_PAGE_SIZE * 4)), 'EINVAL');
    // Counted in bytes: 2048 characters, 4095 bytes.
    expectCode(() => sysfs.write(OVERRIDE, `${'\u00e9'.repeat(2047)}b`), 'EINVAL');
    expect(dev.driverOverride).toBe(longest);
  });

  it('moves a device to another driver: unbind, driver_override, drivers_probe', () => {
    const { foo, bar, dev, calls } = setup({ driverOverride: true });
    expect(dev.driver).toBe(foo);
    const events = record();
    sysfs.write(`${FOO}/unbind`, 'foo0\n');
    sysfs.write(OVERRIDE, 'bar\n');
    sysfs.write(PROBE, 'foo0\n');
    // bar's own match (the name prefix) would refuse foo0: the override decides alone.
    expect(dev.driver).toBe(bar);
    expect(sysfs.readlink('/sys/devices/foo0/driver')).toBe(BAR);
    expect(events.map((e) => `${e.action} ${e.env.DRIVER}`)).toEqual([
      'unbind undefined',
      'bind bar',
    ]);
    // While the override names bar, foo cannot take the device, by hand or by drivers_probe.
    sysfs.write(`${BAR}/unbind`, 'foo0\n');
    expectCode(() => sysfs.write(`${FOO}/bind`, 'foo0\n'), 'ENODEV');
    sysfs.write(OVERRIDE, '../../foo\n');
    sysfs.write(PROBE, 'foo0\n');
    expect(dev.driver).toBeNull();
    // Cleared, the bus matches again and foo takes it back.
    sysfs.write(OVERRIDE, '\n');
    sysfs.write(PROBE, 'foo0\n');
    expect(dev.driver).toBe(foo);
    expect(calls).toEqual([
      'probe foo foo0',
      'remove foo foo0',
      'probe bar foo0',
      'remove bar foo0',
      'probe foo foo0',
    ]);
  });

  it('applies driver_override to automatic binding too', () => {
    const { bus, foo, bar } = setup({ driverOverride: true });
    const dev = new Device({ name: 'foo1', bus });
    dev.driverOverride = 'bar';
    dev.add();
    cleanups.push(() => dev.del());
    expect(dev.driver).toBe(bar);
    // A driver registered later is offered the unbound device under the same rule.
    sysfs.write(`${BAR}/unbind`, 'foo1\n');
    bar.unregister();
    foo.unregister();
    foo.register();
    expect(dev.driver).toBeNull();
    bar.register();
    expect(dev.driver).toBe(bar);
  });
});

describe('uevents', () => {
  it('delivers to every listener when one throws, and does not fail the add', async () => {
    const bus = new Bus({ name: 'uebus' });
    bus.register();
    cleanups.push(() => bus.unregister());
    const warned = warnings();
    const before = record();
    cleanups.push(
      uevents.subscribe(() => {
        throw new Error('listener broke');
      }),
    );
    const after = record();
    const dev = new Device({ name: 'ue0', bus });
    expect(() => dev.add()).not.toThrow();
    expect(dev.isAdded).toBe(true);
    expect(before.map((e) => e.action)).toEqual(['add']);
    expect(after.map((e) => e.action)).toEqual(['add']);
    dev.del();
    expect(after.map((e) => e.action)).toEqual(['add', 'remove']);
    await nextTurn();
    expect(warned.filter((m) => m.includes('listener broke'))).toHaveLength(2);
  });
});

describe('uevents seen after the operation', () => {
  function world() {
    const bus = new Bus({ name: 'uebus' });
    bus.register();
    const cls = new Class('uecls');
    cls.register();
    const removed: string[] = [];
    const drv = new Driver({ name: 'uedrv', bus, remove: (d) => removed.push(d.name) });
    drv.register();
    cleanups.push(() => {
      bus.unregister();
      cls.unregister();
    });
    return { bus, cls, drv, removed };
  }

  it('lets an add listener remove the device without breaking the add', () => {
    const { bus, drv, removed } = world();
    const events = record();
    let released = 0;
    const dev = new Device({ name: 'ue1', bus, release: () => released++ });
    cleanups.push(
      uevents.subscribe((e) => {
        if (e.action === 'add' && e.devpath === dev.devpath) dev.unregister();
      }),
    );
    expect(() => dev.add()).not.toThrow();
    // The add ran to its end (the driver bound) before the listener saw it.
    expect(events.map((e) => `${e.action} ${e.env.DRIVER ?? ''}`)).toEqual([
      'add ',
      'bind uedrv',
      'unbind ',
      'remove ',
    ]);
    expect(events.map((e) => e.seqnum)).toEqual(
      [...events.map((e) => e.seqnum)].sort((a, b) => a - b),
    );
    expect(removed).toEqual(['ue1']);
    expect(released).toBe(1);
    expect(dev.isAdded).toBe(false);
    expect(drv.boundDevices()).toEqual([]);
    expect(bus.devices()).toEqual([]);
    expect(sysfs.exists('/sys/devices/ue1')).toBe(false);
  });

  it('lets listeners unload the bus, driver and class from add, bind and remove', () => {
    for (const action of ['add', 'bind', 'remove'] as const) {
      const { bus, cls, drv, removed } = world();
      const dev = new Device({ name: 'ue2', bus, class: cls });
      const stop = uevents.subscribe((e) => {
        if (e.action !== action) return;
        drv.unregister();
        bus.unregister();
        cls.unregister();
      });
      cleanups.push(stop);
      expect(() => dev.add()).not.toThrow();
      if (action === 'remove') expect(() => dev.unregister()).not.toThrow();
      expect(removed).toEqual(['ue2']);
      expect(dev.isAdded).toBe(false);
      expect(sysfs.exists('/sys/bus/uebus')).toBe(false);
      expect(sysfs.exists('/sys/class/uecls')).toBe(false);
      stop();
      // Nothing is left behind: the bus and the class register again.
      const again = new Bus({ name: 'uebus' });
      expect(() => again.register()).not.toThrow();
      again.unregister();
      const cls2 = new Class('uecls');
      expect(() => cls2.register()).not.toThrow();
      cls2.unregister();
      while (cleanups.length) cleanups.pop()!();
    }
  });
});

describe('Workqueue', () => {
  it('runs off the caller stack and does not queue a pending item twice', async () => {
    const wq = new Workqueue('t');
    let runs = 0;
    const work = new Work(() => {
      runs++;
    });
    expect(wq.queue(work)).toBe(true);
    expect(wq.queue(work)).toBe(false);
    expect(runs).toBe(0);
    await wq.flush(work);
    expect(runs).toBe(1);
  });

  it('runs items requeued during a drain in the same turn, and still yields the event loop', async () => {
    const wq = new Workqueue('t');
    const other = new Workqueue('u');
    const order: string[] = [];
    let n = 0;
    const pong = new Work(() => {
      order.push(`pong${n}`);
    });
    const ping = new Work((w) => {
      order.push(`ping${n}`);
      if (++n < 3) {
        other.queue(pong);
        wq.queue(w);
      }
    });
    wq.queue(ping);
    setImmediate(() => order.push('other'));
    await sleep(20);
    // One FIFO across queues, requeued items in the same turn: no event-loop turn per hop.
    expect(order.slice(0, 5)).toEqual(['ping0', 'pong1', 'ping1', 'pong2', 'ping2']);

    // An item that requeues itself forever does not starve the event loop: the turn ends after
    // the time slice and a timer gets to stop it.
    let spins = 0;
    let stop = false;
    const spinner = new Work((w) => {
      spins++;
      if (!stop) wq.queue(w);
    });
    wq.queue(spinner);
    await sleep(10);
    stop = true;
    await wq.flush(spinner);
    expect(spins).toBeGreaterThan(1);
  });

  it('polls registered interrupt sources between work items, in the same turn', async () => {
    const wq = new Workqueue('t');
    const order: string[] = [];
    let pending = 0;
    let handled = 0;
    const stop = registerIrqPoll(() => {
      // A device in another thread raised something: deliver it now.
      if (pending === 0) return;
      order.push(`irq${pending}`);
      handled += pending;
      pending = 0;
    });
    cleanups.push(stop);
    let faults = 0;
    const failing = registerIrqPoll(() => {
      if (faults++ === 0) throw new Error('broken source');
    });
    const warned = warnings();
    let n = 0;
    const busy = new Work((w) => {
      order.push(`work${n}`);
      if (n === 1) pending = 2; // raised while the thread is busy
      if (++n < 4) wq.queue(w);
    });
    wq.queue(busy);
    await wq.flush(busy);
    // The interrupt is taken right after the item during which it was raised, not when the
    // thread next gets back to the event loop; a source that throws is reported and skipped.
    expect(order).toEqual(['work0', 'work1', 'irq2', 'work2', 'work3']);
    expect(handled).toBe(2);
    await nextTurn();
    expect(warned).toContain('interrupt poll failed: Error: broken source');
    expect(faults).toBeGreaterThan(1); // still polled after the fault
    failing();
    // Unregistered sources are no longer polled.
    stop();
    pending = 5;
    wq.queue(busy);
    await wq.flush(busy);
    expect(handled).toBe(2);
  });

  it('cancels a pending item and waits for a running one', async () => {
    const wq = new Workqueue('t');
    let runs = 0;
    const work = new Work(() => {
      runs++;
    });
    wq.queue(work);
    expect(await wq.cancelSync(work)).toBe(true);
    await nextTurn();
    expect(runs).toBe(0);

    let release!: () => void;
    const slow = new Work(() => new Promise<void>((r) => (release = r)));
    wq.queue(slow);
    await nextTurn();
    expect(slow.isRunning).toBe(true);
    let cancelled = false;
    const p = wq.cancelSync(slow).then((v) => {
      cancelled = true;
      return v;
    });
    await nextTurn();
    expect(cancelled).toBe(false);
    release();
    expect(await p).toBe(false);
  });
});

describe('Workqueue, reviewed', () => {
  /**
   * Whether `p` settles within `ms`: a hang fails the test in seconds, not at the timeout. The
   * default is generous because a loaded machine may run the timer before a pending turn.
   */
  async function settlesWithin(p: Promise<unknown>, ms = 5000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
    const settled = await Promise.race([p.then(() => true), late]);
    clearTimeout(timer);
    return settled;
  }

  /** An async item whose runs wait for `release()`; each run requeues it while `again()`. */
  function gated(wq: Workqueue, again: () => boolean) {
    const gate = { runs: 0, release: () => {} };
    const work = new Work(async (w) => {
      gate.runs++;
      await new Promise<void>((r) => (gate.release = r));
      if (again()) wq.queue(w);
    });
    return { gate, work };
  }

  it('reports an item that throws or rejects and goes on with the others', async () => {
    const wq = new Workqueue('faulty');
    const warned = warnings();
    const order: string[] = [];
    const throws = new Work(() => {
      order.push('throws');
      throw new Error('sync fault');
    });
    const rejects = new Work(async () => {
      order.push('rejects');
      throw new Error('async fault');
    });
    const fine = new Work(() => {
      order.push('fine');
    });
    wq.queue(throws);
    wq.queue(rejects);
    wq.queue(fine);
    await wq.flush(fine);
    await wq.flush(rejects);
    await nextTurn();
    expect(order).toEqual(['throws', 'rejects', 'fine']);
    expect(warned).toContain('workqueue faulty: work item failed: Error: sync fault');
    expect(warned).toContain('workqueue faulty: work item failed: Error: async fault');
    for (const w of [throws, rejects]) expect(w.isPending || w.isRunning).toBe(false);
    // Both can be queued and run again.
    expect(wq.queue(throws)).toBe(true);
    expect(wq.queue(rejects)).toBe(true);
    await wq.flush(rejects);
    expect(order.slice(3)).toEqual(['throws', 'rejects']);
  });

  it('keeps a self-requeuing async item off the queue until cancelSync returns', async () => {
    const wq = new Workqueue('t');
    const { gate, work } = gated(wq, () => true);
    wq.queue(work);
    await nextTurn();
    expect(work.isRunning).toBe(true);
    const cancel = wq.cancelSync(work);
    gate.release(); // the run ends by requeuing itself
    expect(await settlesWithin(cancel)).toBe(true);
    expect(await cancel).toBe(false);
    await nextTurn();
    expect(gate.runs).toBe(1);
    expect(work.isPending || work.isRunning).toBe(false);

    // Nor can anyone else queue it while the cancel waits; once it has returned, they can.
    wq.queue(work);
    await nextTurn();
    const again = wq.cancelSync(work);
    expect(wq.queue(work)).toBe(false);
    gate.release();
    expect(await again).toBe(false);
    expect(wq.queue(work)).toBe(true);
    await nextTurn();
    expect(gate.runs).toBe(3);
    const last = wq.cancelSync(work);
    gate.release();
    await last;
  });

  it('does not hold back a queue right after cancelling an item that is not running', async () => {
    const wq = new Workqueue('t');
    let runs = 0;
    const work = new Work(() => {
      runs++;
    });
    wq.queue(work);
    void wq.cancelSync(work);
    // A reset then an enable in one go (mvnet, virtio-net stop/open): the item runs once.
    expect(wq.queue(work)).toBe(true);
    await wq.flush(work);
    expect(runs).toBe(1);
  });

  it('flushes the run pending or running at flush time, not later requeues', async () => {
    const wq = new Workqueue('t');
    let runs = 0;
    let stop = false;
    const spinner = new Work((w) => {
      runs++;
      if (!stop) wq.queue(w);
    });
    wq.queue(spinner);
    expect(await settlesWithin(wq.flush(spinner))).toBe(true);
    expect(runs).toBeGreaterThanOrEqual(1);
    stop = true;
    await wq.flush(spinner);

    // Running: the flush waits for that run only, not for the one it queues.
    const { gate, work } = gated(wq, () => gate.runs < 3);
    wq.queue(work);
    await nextTurn();
    const first = wq.flush(work);
    gate.release();
    expect(await settlesWithin(first)).toBe(true);
    expect(gate.runs).toBe(1);
    expect(work.isPending).toBe(true);

    // Running with a run pending: it waits for the pending one too.
    await nextTurn();
    expect(gate.runs).toBe(2);
    expect(wq.queue(work)).toBe(true);
    const second = wq.flush(work);
    gate.release(); // run 2 ends; run 3 starts
    expect(await settlesWithin(second, 50)).toBe(false);
    expect(gate.runs).toBe(3);
    gate.release();
    await second;
    expect(work.isPending || work.isRunning).toBe(false);
  });

  it('does not run an async item again while its previous run is in progress', async () => {
    const wq = new Workqueue('t');
    let active = 0;
    let most = 0;
    const { gate, work } = gated(wq, () => false);
    const counted = new Work(async (w) => {
      active++;
      most = Math.max(most, active);
      await work.fn(w);
      active--;
    });
    wq.queue(counted);
    await nextTurn();
    expect(wq.queue(counted)).toBe(true); // pending while it runs
    await nextTurn();
    expect(gate.runs).toBe(1); // the second run waits for the first
    gate.release();
    await nextTurn();
    await nextTurn();
    expect(gate.runs).toBe(2);
    gate.release();
    await wq.flush(counted);
    expect(most).toBe(1);
  });

  it('runs a cancelled and re-queued item after the items queued before it', async () => {
    const wq = new Workqueue('t');
    const order: string[] = [];
    const a = new Work(() => {
      order.push('a');
    });
    const b = new Work(() => {
      order.push('b');
    });
    wq.queue(a);
    expect(await wq.cancelSync(a)).toBe(true);
    wq.queue(b);
    wq.queue(a);
    await wq.flush(a);
    await wq.flush(b);
    expect(order).toEqual(['b', 'a']);
  });
});
