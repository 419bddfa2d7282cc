import { Class, Device, KernelError, sysfs, uevents } from '@mdev/driver-core';
import {
  type MdevDevice,
  mdevDeviceCreate,
  mdevDeviceRemove,
  mdevDevices,
  mdevReservedUuids,
} from '@mdev/mdev-core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DmaBuf,
  Eventfd,
  encodeIrqSet,
  eventfdCtxFdget,
  fdget,
  MdevVfioDevice,
  type MdevVfioOps,
  mdevVfioBus,
  mdevVfioExit,
  mdevVfioGetOps,
  mdevVfioInit,
  mdevVfioRegisterDevice,
  mdevVfioSetOps,
  mdevVfioUnregisterDevice,
  PAGE_SIZE,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_GET_GFX_DMABUF,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_SIZE,
  VFIO_MAX_RW_COUNT,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_SUBTYPE_GFX_EDID,
  VFIO_REGION_TYPE_GFX,
  VfioDevice,
  type VfioIrqSet,
  vfioCapSparseMmap,
  vfioCapType,
  vfioDecodeCapSparseMmap,
  vfioDecodeCapType,
  vfioDeviceInfo,
  vfioDeviceOpen,
  vfioIrqSet,
  vfioIrqSetData,
  vfioMdevDevices,
  vfioMdevFromDev,
  vfioPciIndexToOffset,
  vfioPciOffsetInRegion,
  vfioPciOffsetToIndex,
  vfioRegionInfo,
  vfioRegionInfoReply,
  vfioSetIrqsValidateAndPrepare,
  vfioSplitAccess,
} from './index';

function errno(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (KernelError.is(err)) return err.code;
    throw err;
  }
  return undefined;
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** A test device: 16 bytes of registers at region 0, recording each access it gets. */
interface TestState {
  regs: Uint8Array;
  accesses: string[];
  opens: number;
  releases: number;
  irq: Eventfd | null;
  fb: Uint8Array;
  dmabufs: DmaBuf[];
  /** The `count` of each request op call, with the releases seen at that moment. */
  requests: { count: number; releases: number }[];
}

function testOps(state: TestState, without: (keyof MdevVfioOps)[] = []): MdevVfioOps {
  const access = (buf: Uint8Array, pos: number, write: boolean) =>
    vfioSplitAccess(buf, pos, (piece, at) => {
      const off = vfioPciOffsetInRegion(at);
      if (vfioPciOffsetToIndex(at) !== 0 || off + piece.length > state.regs.length) return false;
      state.accesses.push(`${write ? 'w' : 'r'}${piece.length}@${off}`);
      if (write) state.regs.set(piece, off);
      else piece.set(state.regs.subarray(off, off + piece.length));
      return true;
    });
  const ops: MdevVfioOps = {
    open: () => {
      state.opens++;
    },
    release: () => {
      state.releases++;
    },
    read: (_m, buf, pos) => access(buf, pos, false),
    write: (_m, buf, pos) => access(buf, pos, true),
    ioctl(_m, cmd, arg) {
      switch (cmd) {
        case VFIO_DEVICE_GET_INFO: {
          const req = vfioDeviceInfo.copyFromUser(arg);
          if (req.argsz < vfioDeviceInfo.minsz) throw new KernelError('EINVAL', 'argsz');
          vfioDeviceInfo.copyToUser(arg, {
            argsz: req.argsz,
            flags: VFIO_DEVICE_FLAGS_PCI,
            numRegions: 10,
            numIrqs: VFIO_PCI_NUM_IRQS,
          });
          return 0;
        }
        case VFIO_DEVICE_GET_REGION_INFO: {
          const req = vfioRegionInfo.copyFromUser(arg);
          if (req.index > 9) throw new KernelError('EINVAL', 'index');
          const caps =
            req.index === 9
              ? [
                  vfioCapType(VFIO_REGION_TYPE_GFX, VFIO_REGION_SUBTYPE_GFX_EDID),
                  vfioCapSparseMmap([{ offset: 0, size: PAGE_SIZE }]),
                ]
              : [];
          vfioRegionInfoReply(
            arg,
            req,
            {
              flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP,
              index: req.index,
              size: 16,
              offset: vfioPciIndexToOffset(req.index),
            },
            caps,
          );
          return 0;
        }
        case VFIO_DEVICE_SET_IRQS: {
          const hdr = vfioIrqSet.copyFromUser(arg);
          // One vector per index, as mtty has for INTx.
          const size = vfioSetIrqsValidateAndPrepare(hdr, 1, VFIO_PCI_NUM_IRQS);
          const data = vfioIrqSetData(arg, hdr, size);
          if (hdr.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
            state.irq = data[0]! >= 0 ? eventfdCtxFdget(data[0]!) : null;
          } else if (hdr.flags & VFIO_IRQ_SET_DATA_NONE) {
            state.irq?.signal();
          } else if (hdr.flags & VFIO_IRQ_SET_DATA_BOOL && data[0]) {
            state.irq?.signal();
          }
          return 0;
        }
        case VFIO_DEVICE_RESET:
          state.regs.fill(0);
          return 0;
        case VFIO_DEVICE_GET_GFX_DMABUF: {
          // get_user(dmabuf_id, arg): a missing or short buffer faults.
          if (!arg || arg.length < 4) throw new KernelError('EFAULT', 'no dmabuf id');
          const buf = new DmaBuf({ memory: state.fb });
          state.dmabufs.push(buf);
          return buf.fd;
        }
        default:
          throw new KernelError('ENOTTY', `unknown ioctl 0x${cmd.toString(16)}`);
      }
    },
    request(_m, count) {
      state.requests.push({ count, releases: state.releases });
      state.irq?.signal();
    },
    mmap(_m, vma) {
      if (!vma.shared) throw new KernelError('EINVAL', 'not shared');
      if (vma.pgoff * PAGE_SIZE !== vfioPciIndexToOffset(9) || vma.length > state.fb.length) {
        throw new KernelError('EINVAL', 'bad mmap');
      }
      return state.fb.subarray(0, vma.length);
    },
  };
  for (const name of without) delete ops[name];
  return ops;
}

function setup(without: (keyof MdevVfioOps)[] = []) {
  const state: TestState = {
    regs: new Uint8Array(16),
    accesses: [],
    opens: 0,
    releases: 0,
    irq: null,
    fb: new Uint8Array(2 * PAGE_SIZE),
    dmabufs: [],
    requests: [],
  };
  const cls = new Class('vfiotest');
  cls.register();
  const parent = new Device({ name: 'vfiotest', class: cls });
  parent.add();
  mdevVfioRegisterDevice(parent, {
    supportedTypeGroups: [
      { name: 'a', attrs: [] },
      { name: 'noops', attrs: [] },
    ],
    create(type, mdev) {
      if (type.group.name === 'a') mdevVfioSetOps(mdev, testOps(state, without));
    },
    remove() {},
  });
  cleanups.push(() => {
    mdevVfioUnregisterDevice(parent);
    parent.unregister();
    cls.unregister();
    mdevVfioExit();
  });
  const mdev = mdevDeviceCreate(parent, 'a', '11111111-2222-3333-4444-555555555555');
  return { state, parent, mdev };
}

describe('the VFIO mediated bus', () => {
  it('puts mdevs on bus mdev, bound to vfio_mdev, with /sys/class/mdev_bus', () => {
    const { mdev, parent } = setup();
    expect(mdev).toBeInstanceOf(MdevVfioDevice);
    expect(vfioMdevFromDev(mdev)).toBe(mdev);
    expect(vfioMdevFromDev(parent)).toBeNull();
    expect(mdev.driver?.name).toBe('vfio_mdev');
    expect(sysfs.readlink(`/sys/bus/mdev/devices/${mdev.uuid}/driver`)).toBe(
      '/sys/bus/mdev/drivers/vfio_mdev',
    );
    expect(sysfs.exists('/sys/class/mdev_bus/vfiotest')).toBe(true);
    expect(vfioMdevDevices()).toEqual([mdev]);
    expect(typeof mdevVfioGetOps(mdev).ioctl).toBe('function');
  });

  it('refuses to open a device whose parent set no ops or no open op (EINVAL)', () => {
    const { parent } = setup();
    const bare = mdevDeviceCreate(parent, 'noops', '11111111-2222-3333-4444-000000000001');
    expect(errno(() => mdevVfioGetOps(bare))).toBe('ENODEV');
    expect(errno(() => vfioDeviceOpen(bare))).toBe('EINVAL');
    expect(errno(() => vfioDeviceOpen('99999999-2222-3333-4444-000000000001'))).toBe('ENODEV');
  });

  it('answers EINVAL for each missing op, as vfio_mdev does', () => {
    setup(['open']);
    expect(errno(() => vfioDeviceOpen('11111111-2222-3333-4444-555555555555'))).toBe('EINVAL');
    cleanups.pop()!();
    setup(['read', 'write', 'ioctl', 'mmap']);
    const h = vfioDeviceOpen('11111111-2222-3333-4444-555555555555');
    expect(errno(() => h.read(0, 4))).toBe('EINVAL');
    expect(errno(() => h.write(0, [1]))).toBe('EINVAL');
    expect(errno(() => h.ioctl(VFIO_DEVICE_RESET))).toBe('EINVAL');
    expect(errno(() => h.mmap(0, PAGE_SIZE))).toBe('EINVAL');
    h.close();
  });
});

describe('a VFIO device handle', () => {
  it('calls open and release once per handle; a closed handle is EBADF', () => {
    const { state, mdev } = setup();
    const h = vfioDeviceOpen(mdev.uuid.toUpperCase());
    expect(h).toBeInstanceOf(VfioDevice);
    expect(fdget(h.fd)).toBe(h);
    expect(state.opens).toBe(1);
    h.close();
    h.close();
    expect(state.releases).toBe(1);
    expect(errno(() => h.read(0, 1))).toBe('EBADF');
    expect(errno(() => fdget(h.fd))).toBe('EBADF');
  });

  it('splits read and write into naturally aligned 4/2/1-byte accesses', () => {
    const { state, mdev } = setup();
    const h = vfioDeviceOpen(mdev);
    expect(h.write(1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).toBe(10);
    expect(state.accesses).toEqual(['w1@1', 'w2@2', 'w4@4', 'w2@8', 'w1@10']);
    expect([...h.read(0, 12)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0]);
    expect(state.accesses.slice(5)).toEqual(['r4@0', 'r4@4', 'r4@8']);
    h.writeU32(12, 0xdeadbeef);
    expect(h.readU16(14)).toBe(0xdead);
    expect(h.readU8(12)).toBe(0xef);
    // A piece outside the registers fails the whole access with EFAULT.
    expect(errno(() => h.read(14, 4))).toBe('EFAULT');
    expect(errno(() => h.read(vfioPciIndexToOffset(1), 1))).toBe('EFAULT');
    expect(errno(() => h.read(-1, 1))).toBe('EINVAL');
    h.close();
  });

  it('encodes GET_INFO and unknown ioctls reach the parent (ENOTTY)', () => {
    const { mdev } = setup();
    const h = vfioDeviceOpen(mdev);
    expect(h.getInfo()).toMatchObject({
      flags: VFIO_DEVICE_FLAGS_PCI,
      numRegions: 10,
      numIrqs: 5,
    });
    expect(errno(() => h.ioctl(0x3b00 + 99, new Uint8Array(16)))).toBe('ENOTTY');
    // A buffer shorter than minsz faults, as copy_from_user would.
    expect(errno(() => h.ioctl(VFIO_DEVICE_GET_INFO, new Uint8Array(8)))).toBe('EFAULT');
    // argsz below minsz is EINVAL.
    expect(errno(() => h.ioctl(VFIO_DEVICE_GET_INFO, vfioDeviceInfo.encode({ argsz: 8 })))).toBe(
      'EINVAL',
    );
    h.close();
  });

  it('returns the capability chain of GET_REGION_INFO after asking for argsz', () => {
    const { mdev } = setup();
    const h = vfioDeviceOpen(mdev);
    // First call with the bare struct: CAPS is set and argsz says how much is needed.
    const small = vfioRegionInfo.encode({ index: 9 });
    h.ioctl(VFIO_DEVICE_GET_REGION_INFO, small);
    const first = vfioRegionInfo.decode(small);
    expect(first.flags & VFIO_REGION_INFO_FLAG_CAPS).toBeTruthy();
    expect(first.capOffset).toBe(0);
    expect(first.argsz).toBe(32 + 16 + 32);
    const info = h.getRegionInfo(9);
    expect(info.capOffset).toBe(32);
    expect(info.offset).toBe(9 * 2 ** 40);
    expect(info.caps.map((c) => [c.id, c.version, c.offset])).toEqual([
      [2, 1, 32],
      [1, 1, 48],
    ]);
    expect(vfioDecodeCapType(info.caps[0]!)).toEqual({
      type: VFIO_REGION_TYPE_GFX,
      subtype: VFIO_REGION_SUBTYPE_GFX_EDID,
    });
    expect(vfioDecodeCapSparseMmap(info.caps[1]!)).toEqual([{ offset: 0, size: PAGE_SIZE }]);
    const plain = h.getRegionInfo(VFIO_PCI_CONFIG_REGION_INDEX);
    expect(plain.caps).toEqual([]);
    expect(plain.flags & VFIO_REGION_INFO_FLAG_CAPS).toBe(0);
    expect(errno(() => h.getRegionInfo(10))).toBe('EINVAL');
    h.close();
  });

  it('passes eventfds through SET_IRQS as fd numbers and counts the signals', () => {
    const { state, mdev } = setup();
    const h = vfioDeviceOpen(mdev);
    const efd = new Eventfd();
    const seen: number[] = [];
    efd.onSignal((_e, n) => seen.push(n));
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: 0,
      data: [efd],
    });
    expect(state.irq).toBe(efd);
    h.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index: 0, count: 1 });
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: 0,
      data: [true],
    });
    expect(seen).toEqual([1, 1]);
    expect(efd.total).toBe(2);
    expect(efd.read()).toBe(2);
    expect(errno(() => efd.read())).toBe('EAGAIN');
    // Bad index, bad range and a closed fd.
    expect(
      errno(() =>
        h.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index: 5 }),
      ),
    ).toBe('EINVAL');
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
          index: 0,
          start: 1,
          data: [efd],
        }),
      ),
    ).toBe('EINVAL');
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
          index: 0,
          data: [efd],
        }),
      ),
    ).toBe('EINVAL');
    efd.close();
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
          index: 0,
          data: [efd],
        }),
      ),
    ).toBe('EBADF');
    expect(errno(() => eventfdCtxFdget(h.fd))).toBe('EINVAL');
    h.close();
  });

  it('maps a shared view and hands out dma-bufs as files', () => {
    const { state, mdev } = setup();
    const h = vfioDeviceOpen(mdev);
    const map = h.mmap(vfioPciIndexToOffset(9), PAGE_SIZE);
    map[5] = 0x5a;
    expect(state.fb[5]).toBe(0x5a);
    expect(errno(() => h.mmap(vfioPciIndexToOffset(9) + 1, PAGE_SIZE))).toBe('EINVAL');
    expect(errno(() => h.mmap(vfioPciIndexToOffset(9), PAGE_SIZE, { shared: false }))).toBe(
      'EINVAL',
    );
    const buf = h.getGfxDmabuf(1);
    expect(buf.size).toBe(2 * PAGE_SIZE);
    state.fb[PAGE_SIZE] = 7;
    expect(buf.mmap(PAGE_SIZE, PAGE_SIZE)[0]).toBe(7);
    expect(errno(() => buf.mmap(1, 1))).toBe('EINVAL');
    buf.close();
    expect(errno(() => buf.mmap())).toBe('EBADF');
    expect(errno(() => h.ioctl(VFIO_DEVICE_GET_GFX_DMABUF, null))).toBe('EFAULT');
    expect(errno(() => h.ioctl(VFIO_DEVICE_GET_GFX_DMABUF, new Uint8Array(2)))).toBe('EFAULT');
    for (const b of state.dmabufs) b.close();
    h.close();
  });

  it('revokes open handles when the mdev is removed (release once, then ENODEV)', () => {
    const { state, mdev } = setup();
    const h = vfioDeviceOpen(mdev);
    const efd = new Eventfd();
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: 0,
      data: [efd],
    });
    mdevDeviceRemove(mdev as MdevDevice);
    // The request op ran once, before the handle was revoked (no release yet), and could
    // still reach the user.
    expect(state.requests).toEqual([{ count: 0, releases: 0 }]);
    expect(efd.total).toBe(1);
    efd.close();
    expect(state.releases).toBe(1);
    expect(errno(() => h.read(0, 1))).toBe('ENODEV');
    h.close();
    expect(state.releases).toBe(1);
    expect(vfioMdevDevices()).toEqual([]);
  });

  it('asks no one to release a device that is not open', () => {
    const { state, mdev } = setup();
    vfioDeviceOpen(mdev).close();
    mdevDeviceRemove(mdev as MdevDevice);
    expect(state.requests).toEqual([]);
    expect(state.releases).toBe(1);
  });

  it('refuses a read length that is negative, fractional or above MAX_RW_COUNT (EINVAL)', () => {
    const { mdev } = setup();
    const h = vfioDeviceOpen(mdev);
    expect(VFIO_MAX_RW_COUNT).toBe(0x7ffff000);
    expect(errno(() => h.read(0, 2 ** 40))).toBe('EINVAL');
    expect(errno(() => h.read(0, VFIO_MAX_RW_COUNT + 1))).toBe('EINVAL');
    expect(errno(() => h.read(0, -1))).toBe('EINVAL');
    expect(errno(() => h.read(0, 1.5))).toBe('EINVAL');
    expect(errno(() => h.read(0, Number.NaN))).toBe('EINVAL');
    expect(h.read(0, 0).length).toBe(0);
    h.close();
    expect(errno(() => h.read(0, 1))).toBe('EBADF');
  });
});

describe('numbers from the user', () => {
  it('answers EINVAL for an index, flag, fd, value or request that is not a number C could pass', () => {
    const { mdev } = setup();
    const h = vfioDeviceOpen(mdev);
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 32]) {
      expect(errno(() => h.getRegionInfo(bad))).toBe('EINVAL');
      expect(errno(() => h.getIrqInfo(bad))).toBe('EINVAL');
      expect(errno(() => h.setIrqs({ flags: bad, index: 0 }))).toBe('EINVAL');
      expect(errno(() => h.setIrqs({ flags: 0x21, index: bad }))).toBe('EINVAL');
      expect(errno(() => h.setIrqs({ flags: 0x21, index: 0, start: bad, count: 1 }))).toBe(
        'EINVAL',
      );
      expect(errno(() => h.setIrqs({ flags: 0x21, index: 0, count: bad }))).toBe('EINVAL');
      expect(errno(() => h.queryGfxPlane(bad, 1))).toBe('EINVAL');
      expect(errno(() => h.queryGfxPlane(1, bad))).toBe('EINVAL');
      expect(errno(() => h.getGfxDmabuf(bad))).toBe('EINVAL');
      expect(errno(() => h.regionOffset(bad))).toBe('EINVAL');
      expect(errno(() => h.writeU8(0, bad === -1 ? 256 : bad))).toBe('EINVAL');
      expect(errno(() => h.write(0, [bad === -1 ? 256 : bad]))).toBe('EINVAL');
    }
    for (const bad of [1.5, Number.NaN, 2 ** 32, -(2 ** 31) - 1]) {
      expect(errno(() => h.ioctl(bad, null))).toBe('EINVAL');
    }
    expect(errno(() => h.setIrqs({ flags: 0x24, index: 0, data: [1.5] }))).toBe('EINVAL');
    expect(errno(() => h.setIrqs({ flags: 0x24, index: 0, data: [2 ** 31] }))).toBe('EINVAL');
    expect(errno(() => h.regionOffset(2 ** 13))).toBe('EINVAL'); // index << 40 beyond 2^53
    // The struct's own range checks still answer for the numbers C can pass.
    expect(errno(() => h.getRegionInfo(2 ** 32 - 1))).toBe('EINVAL');
    expect(errno(() => h.ioctl(-1, null))).toBe('ENOTTY'); // 0xffffffff: no such request
    expect(h.regionOffset(1)).toBe(2 ** 40);
    h.writeU32(0, -1); // the int32 spelling of 0xffffffff
    expect(h.readU32(0)).toBe(0xffff_ffff);
    h.close();
  });
});

describe('unloading the bus', () => {
  it('refuses mdevVfioExit() with EBUSY while a parent and its mdevs are loaded', () => {
    const { parent, mdev } = setup();
    expect(errno(() => mdevVfioExit())).toBe('EBUSY');
    expect(mdevVfioBus.isRegistered).toBe(true);
    expect(mdev.driver?.name).toBe('vfio_mdev');
    expect(vfioMdevDevices()).toEqual([mdev]);
    expect(mdevReservedUuids()).toEqual([mdev.uuid]);
    mdevVfioUnregisterDevice(parent);
    expect(mdevReservedUuids()).toEqual([]);
    expect(() => mdevVfioExit()).not.toThrow();
    expect(sysfs.exists('/sys/bus/mdev')).toBe(false);
    // Loaded again, vfio_mdev comes back with the bus.
    mdevVfioInit();
    expect(mdevVfioBus.drivers().map((d) => d.name)).toEqual(['vfio_mdev']);
  });

  for (const action of ['add', 'bind', 'unbind', 'remove'] as const) {
    it(`lets a ${action} listener unload the parent and the bus`, () => {
      const cls = new Class('vfiounload');
      cls.register();
      const parent = new Device({ name: 'vfiounload', class: cls });
      parent.add();
      const removed: string[] = [];
      mdevVfioRegisterDevice(parent, {
        supportedTypeGroups: [{ name: 'a', attrs: [] }],
        create: (_t, m) => mdevVfioSetOps(m, {}),
        remove: (m) => removed.push(m.uuid),
      });
      const uuid = '11111111-2222-3333-4444-5555555555aa';
      let fired = 0;
      const stop = uevents.subscribe((e) => {
        if (e.action !== action || !e.devpath.endsWith(uuid) || fired++) return;
        mdevVfioUnregisterDevice(parent);
        parent.unregister();
        cls.unregister();
        mdevVfioExit();
      });
      try {
        const m = mdevDeviceCreate(parent, 'a', uuid);
        if (action === 'unbind' || action === 'remove') mdevDeviceRemove(m);
        expect(fired).toBe(1);
        expect(removed).toEqual([uuid]);
        expect(mdevDevices()).toEqual([]);
        expect(mdevReservedUuids()).toEqual([]);
        expect(sysfs.exists('/sys/bus/mdev')).toBe(false);
        expect(sysfs.exists('/sys/class/vfiounload')).toBe(false);
      } finally {
        stop();
      }
      // The class registers again.
      const again = new Class('vfiounload');
      again.register();
      again.unregister();
    });
  }
});

describe('vfio_set_irqs_validate_and_prepare', () => {
  const hdr = (over: Partial<VfioIrqSet>): VfioIrqSet => ({
    argsz: VFIO_IRQ_SET_SIZE,
    flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
    index: 0,
    start: 0,
    count: 1,
    ...over,
  });
  // (hdr, num_irqs = vectors of the index, max_irq_type = number of indexes), as the kernel.
  const check = (h: VfioIrqSet, numIrqs = 1, maxIrqType = VFIO_PCI_NUM_IRQS) =>
    errno(() => vfioSetIrqsValidateAndPrepare(h, numIrqs, maxIrqType));

  it('checks the vector range for DATA_NONE as for every data type', () => {
    expect(check(hdr({ start: 3 }))).toBe('EINVAL');
    expect(check(hdr({ start: 1, count: 0 }))).toBe('EINVAL');
    expect(check(hdr({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, count: 9 }))).toBe(
      'EINVAL',
    );
    expect(check(hdr({ count: 2 }), 2)).toBeUndefined();
    expect(check(hdr({ start: 1, count: 2 }), 2)).toBe('EINVAL');
    // An index without vectors takes nothing, not even a disable.
    expect(check(hdr({ count: 0 }), 0)).toBe('EINVAL');
    expect(check(hdr({ count: 0 }))).toBeUndefined();
    // start + count may not wrap a u32.
    expect(check(hdr({ start: 0xfffffff0, count: 0x20 }), 0xffffffff)).toBe('EINVAL');
  });

  it('checks the index against the number of indexes, not the vectors', () => {
    expect(check(hdr({ index: 4 }), 1, 5)).toBeUndefined();
    expect(check(hdr({ index: 5 }), 1, 5)).toBe('EINVAL');
    expect(check(hdr({ index: 1 }), 1, 1)).toBe('EINVAL');
  });

  it('returns the data size; an argsz larger than needed is accepted, a short one is not', () => {
    const eventfd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    const bool = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
    expect(vfioSetIrqsValidateAndPrepare(hdr({ flags: eventfd, argsz: 24 }), 1, 5)).toBe(4);
    expect(vfioSetIrqsValidateAndPrepare(hdr({ flags: eventfd, argsz: 4096 }), 1, 5)).toBe(4);
    expect(vfioSetIrqsValidateAndPrepare(hdr({ flags: bool, count: 3, argsz: 64 }), 4, 5)).toBe(3);
    expect(vfioSetIrqsValidateAndPrepare(hdr({ argsz: 4096 }), 1, 5)).toBe(0);
    expect(check(hdr({ flags: eventfd, argsz: 23 }))).toBe('EINVAL');
    expect(check(hdr({ argsz: VFIO_IRQ_SET_SIZE - 1 }))).toBe('EINVAL');
    expect(check(hdr({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL }))).toBe('EINVAL');
    expect(check(hdr({ flags: 1 << 6 }))).toBe('EINVAL');
  });

  it('refuses DATA_NONE outside the vectors through a device, and fires nothing', () => {
    const { mdev } = setup();
    const h = vfioDeviceOpen(mdev);
    const efd = new Eventfd();
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: 0,
      data: [efd],
    });
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
          index: 0,
          start: 3,
          count: 1,
        }),
      ),
    ).toBe('EINVAL');
    expect(efd.total).toBe(0);
    // A SET_IRQS buffer with room to spare (argsz past the data) is accepted.
    const big = new Uint8Array(64);
    encodeIrqSet({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: 0,
      data: [efd],
    }).forEach((b, i) => {
      big[i] = b;
    });
    new DataView(big.buffer).setUint32(0, big.length, true);
    expect(h.ioctl(VFIO_DEVICE_SET_IRQS, big)).toBe(0);
    efd.close();
    h.close();
  });
});

describe('the eventfd', () => {
  it('resolves wait() at the next signal', async () => {
    const efd = new Eventfd();
    const p = efd.wait();
    efd.signal(3);
    await expect(p).resolves.toBe(3);
    efd.close();
    expect(efd.signal()).toBe(0);
  });
});
