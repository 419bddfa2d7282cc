import { Class, KernelError, sysfs, uevents } from '@mdev/driver-core';
import { mdevDevices, mdevReservedUuids } from '@mdev/mdev-core';
import {
  Eventfd,
  encodeIrqSet,
  mdevVfioExit,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_BAR1_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_REQ_IRQ_INDEX,
  VFIO_PCI_VGA_REGION_INDEX,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  type VfioDevice,
  vfioDeviceOpen,
  vfioIrqInfo,
  vfioPciIndexToOffset,
} from '@mdev/mdev-vfio';
import { afterEach, describe, expect, it } from 'vitest';
import { type MttyHandle, mttyExit, mttyInit } from './device';
import {
  UART_DLL,
  UART_DLM,
  UART_FCR,
  UART_FCR_CLEAR_RCVR,
  UART_FCR_ENABLE_FIFO,
  UART_FCR_TRIGGER_4,
  UART_FCR_TRIGGER_14,
  UART_IER,
  UART_IER_MSI,
  UART_IER_RDI,
  UART_IER_RLSI,
  UART_IER_THRI,
  UART_IIR,
  UART_IIR_FIFO_ENABLED,
  UART_IIR_MSI,
  UART_IIR_NO_INT,
  UART_IIR_RDI,
  UART_IIR_RLSI,
  UART_IIR_THRI,
  UART_LCR,
  UART_LCR_DLAB,
  UART_LCR_WLEN8,
  UART_LSR,
  UART_LSR_DR,
  UART_LSR_OE,
  UART_LSR_TEMT,
  UART_LSR_THRE,
  UART_MCR,
  UART_MCR_DTR,
  UART_MCR_LOOP,
  UART_MCR_OUT1,
  UART_MCR_OUT2,
  UART_MCR_RTS,
  UART_MSR,
  UART_MSR_CTS,
  UART_MSR_DCD,
  UART_MSR_DDCD,
  UART_MSR_DSR,
  UART_MSR_RI,
  UART_MSR_TERI,
  UART_RX,
  UART_SCR,
  UART_TX,
} from './serial_reg';

const TYPES = '/sys/devices/virtual/mtty/mtty/mdev_supported_types';
const UUID1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const UUID2 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';

function errno(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (KernelError.is(err)) return err.code;
    throw err;
  }
  return undefined;
}

let mtty: MttyHandle | null = null;
const open: VfioDevice[] = [];
const fds: Eventfd[] = [];
afterEach(() => {
  for (const h of open.splice(0)) h.close();
  for (const e of fds.splice(0)) e.close();
  mtty?.exit();
  mtty = null;
  mdevVfioExit();
});

function load(): MttyHandle {
  mtty = mttyInit();
  return mtty;
}

/** Creates an mtty device the way the README does, and opens it through VFIO. */
function device(type: 'mtty-1' | 'mtty-2', uuid = UUID1): VfioDevice {
  if (!mtty) load();
  sysfs.write(`${TYPES}/${type}/create`, uuid);
  const h = vfioDeviceOpen(uuid);
  open.push(h);
  return h;
}

function eventfd(): Eventfd {
  const e = new Eventfd();
  fds.push(e);
  return e;
}

const CFG = vfioPciIndexToOffset(VFIO_PCI_CONFIG_REGION_INDEX);
const port = (n: number) => vfioPciIndexToOffset(VFIO_PCI_BAR0_REGION_INDEX + n);

/** Register access of port `n` through the VFIO file, one byte at a time as a guest does. */
function uart(h: VfioDevice, n = 0) {
  return {
    r: (reg: number) => h.readU8(port(n) + reg),
    w: (reg: number, v: number) => h.writeU8(port(n) + reg, v),
  };
}

describe('mtty types', () => {
  it('publishes mtty-1 and mtty-2 with name, device_api and available_instances', () => {
    load();
    expect(sysfs.list(TYPES)).toEqual(['mtty-1', 'mtty-2']);
    expect(sysfs.read(`${TYPES}/mtty-1/name`)).toBe('Single port serial\n');
    expect(sysfs.read(`${TYPES}/mtty-2/name`)).toBe('Dual port serial\n');
    expect(sysfs.read(`${TYPES}/mtty-1/device_api`)).toBe('vfio-pci\n');
    expect(sysfs.read(`${TYPES}/mtty-1/available_instances`)).toBe('24\n');
    expect(sysfs.read(`${TYPES}/mtty-2/available_instances`)).toBe('12\n');
    expect(sysfs.read('/sys/devices/virtual/mtty/mtty/mtty_dev/sample_mtty_dev')).toBe(
      'This is phy device\n',
    );
  });

  it('enforces available_instances with ENOSPC and gives ports back on remove', () => {
    load();
    for (let i = 0; i < 11; i++) {
      sysfs.write(
        `${TYPES}/mtty-2/create`,
        `00000000-0000-0000-0000-0000000002${i.toString(16).padStart(2, '0')}`,
      );
    }
    expect(sysfs.read(`${TYPES}/mtty-2/available_instances`)).toBe('1\n');
    sysfs.write(`${TYPES}/mtty-1/create`, '00000000-0000-0000-0000-000000000101');
    expect(sysfs.read(`${TYPES}/mtty-1/available_instances`)).toBe('1\n');
    expect(sysfs.read(`${TYPES}/mtty-2/available_instances`)).toBe('0\n');
    expect(errno(() => sysfs.write(`${TYPES}/mtty-2/create`, UUID2))).toBe('ENOSPC');
    // The refused UUID is free again.
    expect(mdevDevices().some((m) => m.uuid === UUID2)).toBe(false);
    sysfs.write(`/sys/bus/mdev/devices/00000000-0000-0000-0000-000000000200/remove`, '1');
    expect(sysfs.read(`${TYPES}/mtty-2/available_instances`)).toBe('1\n');
    sysfs.write(`${TYPES}/mtty-2/create`, UUID2);
    expect(sysfs.read(`${TYPES}/mtty-1/available_instances`)).toBe('1\n');
    expect(sysfs.read(`/sys/bus/mdev/devices/${UUID2}/vendor/sample_mdev_dev`)).toBe(
      `This is MDEV ${UUID2}\n`,
    );
  });
});

describe('mtty PCI config space', () => {
  it('holds the bytes of the sample: ids, class, BARs, pin, vendor bytes and label', () => {
    const h = device('mtty-2');
    const cfg = h.read(CFG, 0x70);
    const expected = new Uint8Array(0x70);
    // mtty_create_config_space() of samples/vfio-mdev/mtty.c (v5.4), offset by offset.
    expected.set([0x48, 0x43, 0x53, 0x32], 0x00); // vendor 0x4348, device 0x3253
    expected.set([0x01, 0x00, 0x00, 0x02], 0x04); // command I/O+, status 0x0200
    expected.set([0x10, 0x02, 0x00, 0x07], 0x08); // rev 0x10, prog-if 02, subclass 0, class 07
    expected.set([0x01, 0, 0, 0], 0x10); // BAR0: I/O
    expected.set([0x01, 0, 0, 0], 0x14); // BAR1: I/O (two ports)
    expected.set([0x48, 0x43, 0x53, 0x32], 0x2c); // subsystem ids
    expected[0x3d] = 0x01; // INTA#
    expected[0x40] = 0x23;
    expected[0x43] = 0x80;
    expected[0x44] = 0x23;
    expected[0x48] = 0x23;
    expected[0x4c] = 0x23;
    expected.set(
      [...'PCI Serial/UART'].map((c) => c.charCodeAt(0)),
      0x60,
    );
    expect([...cfg]).toEqual([...expected]);
    // The single-port card has no BAR1.
    const one = device('mtty-1', UUID2);
    expect(one.readU32(CFG + 0x14)).toBe(0);
    expect(one.readU32(CFG + 0x10)).toBe(1);
  });

  it('sizes the I/O BARs: all-ones reads back the 8-byte mask, unimplemented BARs stay 0', () => {
    const h = device('mtty-2');
    h.writeU32(CFG + 0x10, 0xffffffff);
    const bar0 = h.readU32(CFG + 0x10);
    expect(bar0).toBe(0xfffffff9);
    expect(((~(bar0 & ~0x3) >>> 0) + 1) >>> 0).toBe(8);
    h.writeU32(CFG + 0x14, 0xffffffff);
    expect(h.readU32(CFG + 0x14)).toBe(0xfffffff9);
    for (const bar of [0x18, 0x1c, 0x20, 0x24]) {
      h.writeU32(CFG + bar, 0xffffffff);
      expect(h.readU32(CFG + bar)).toBe(0);
    }
    // Programming addresses keeps the I/O flag and drops bits below the size.
    h.writeU32(CFG + 0x10, 0xc150);
    h.writeU32(CFG + 0x14, 0xc15f);
    expect(h.readU32(CFG + 0x10)).toBe(0xc151);
    expect(h.readU32(CFG + 0x14)).toBe(0xc159);
    const one = device('mtty-1', UUID2);
    one.writeU32(CFG + 0x14, 0xffffffff);
    expect(one.readU32(CFG + 0x14)).toBe(0);
    // Read-only fields ignore writes; the interrupt line keeps what is written.
    h.writeU16(CFG + 0x00, 0x1234);
    h.writeU8(CFG + 0x3d, 0x04);
    h.writeU8(CFG + 0x3c, 0x0b);
    expect(h.readU16(CFG)).toBe(0x4348);
    expect(h.readU8(CFG + 0x3d)).toBe(1);
    expect(h.readU8(CFG + 0x3c)).toBe(0x0b);
  });
});

describe('mtty VFIO regions and irqs', () => {
  it('reports device, region and irq info', () => {
    const h = device('mtty-1');
    expect(h.getInfo()).toMatchObject({ numRegions: 9, numIrqs: 5 });
    expect(h.getInfo().flags & VFIO_DEVICE_FLAGS_PCI).toBeTruthy();
    const rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    expect(h.getRegionInfo(VFIO_PCI_CONFIG_REGION_INDEX)).toMatchObject({
      size: 0xff,
      flags: rw,
      offset: 7 * 2 ** 40,
    });
    expect(h.getRegionInfo(VFIO_PCI_BAR0_REGION_INDEX)).toMatchObject({ size: 8, flags: rw });
    expect(h.getRegionInfo(VFIO_PCI_BAR1_REGION_INDEX)).toMatchObject({ size: 0, flags: 0 });
    const two = device('mtty-2', UUID2);
    expect(two.getRegionInfo(VFIO_PCI_BAR1_REGION_INDEX)).toMatchObject({
      size: 8,
      offset: 2 ** 40,
    });
    expect(h.getIrqInfo(VFIO_PCI_INTX_IRQ_INDEX)).toMatchObject({
      flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
      count: 1,
    });
    expect(h.getIrqInfo(VFIO_PCI_MSI_IRQ_INDEX)).toMatchObject({
      flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE,
      count: 1,
    });
  });

  it('answers each bad call with its errno', () => {
    const h = device('mtty-1');
    expect(errno(() => h.getRegionInfo(9))).toBe('EINVAL');
    expect(errno(() => h.getRegionInfo(0xffffffff))).toBe('EINVAL');
    expect(errno(() => h.getIrqInfo(5))).toBe('EINVAL');
    expect(errno(() => h.getIrqInfo(VFIO_PCI_MSIX_IRQ_INDEX))).toBe('EINVAL');
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
          index: 5,
          count: 1,
        }),
      ),
    ).toBe('EINVAL');
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
          index: VFIO_PCI_MSIX_IRQ_INDEX,
          count: 1,
        }),
      ),
    ).toBe('EINVAL');
    // MSI cannot be masked (no MASKABLE flag): vfio-pci and mtty have no handler, ENOTTY.
    expect(
      errno(() =>
        h.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, index: 1, count: 1 }),
      ),
    ).toBe('ENOTTY');
    // An fd that is not open, and one that is not an eventfd.
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
          index: 0,
          data: [9999],
        }),
      ),
    ).toBe('EBADF');
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
          index: 0,
          data: [h],
        }),
      ),
    ).toBe('EINVAL');
    expect(errno(() => h.ioctl(0x3b00 + 120, new Uint8Array(64)))).toBe('ENOTTY');
    expect(errno(() => h.ioctl(0x5401, null))).toBe('ENOTTY');
    expect(errno(() => h.ioctl(VFIO_DEVICE_GET_INFO, new Uint8Array(4)))).toBe('EFAULT');
    expect(errno(() => h.ioctl(VFIO_DEVICE_GET_IRQ_INFO, vfioIrqInfo.encode({ argsz: 8 })))).toBe(
      'EINVAL',
    );
    // Accesses nothing decodes: another region, past the BAR, past the config space.
    expect(errno(() => h.read(vfioPciIndexToOffset(VFIO_PCI_VGA_REGION_INDEX), 1))).toBe('EFAULT');
    expect(errno(() => h.read(port(1), 1))).toBe('EFAULT');
    expect(errno(() => h.read(port(0) + 8, 1))).toBe('EFAULT');
    expect(errno(() => h.read(CFG + 0xfc, 4))).toBe('EFAULT');
    expect(errno(() => h.mmap(0, 4096))).toBe('EINVAL');
  });
});

describe('mtty as 5.4 has it', () => {
  it('answers GET_IRQ_INFO only after GET_INFO, and GET_INFO without FLAGS_RESET', () => {
    const h = device('mtty-1');
    // mtty_ioctl() checks the index against the num_irqs GET_INFO cached: 0 before it.
    expect(errno(() => h.getIrqInfo(VFIO_PCI_INTX_IRQ_INDEX))).toBe('EINVAL');
    const info = h.getInfo();
    expect(info.flags).toBe(VFIO_DEVICE_FLAGS_PCI);
    expect(info.flags & VFIO_DEVICE_FLAGS_RESET).toBe(0);
    expect(h.getIrqInfo(VFIO_PCI_INTX_IRQ_INDEX).count).toBe(1);
    // The cache is the device's: a second handle need not ask again.
    const again = vfioDeviceOpen(UUID1);
    open.push(again);
    expect(again.getIrqInfo(VFIO_PCI_MSI_IRQ_INDEX).count).toBe(1);
    // Reset is not advertised but still handled, as mtty_ioctl() does.
    expect(() => h.reset()).not.toThrow();
  });

  it('reports an absent region with flags 0 (a deliberate departure from 5.4)', () => {
    const h = device('mtty-1');
    expect(h.getRegionInfo(VFIO_PCI_BAR1_REGION_INDEX)).toMatchObject({ size: 0, flags: 0 });
    expect(h.getRegionInfo(VFIO_PCI_VGA_REGION_INDEX)).toMatchObject({ size: 0, flags: 0 });
  });
});

describe('uevent listeners that unload mtty', () => {
  for (const action of ['add', 'bind', 'remove'] as const) {
    it(`leave nothing behind when they unload on ${action}`, () => {
      const m = load();
      let fired = 0;
      const stop = uevents.subscribe((e) => {
        if (e.action !== action || !e.devpath.endsWith(UUID1) || fired++) return;
        m.exit();
        mtty = null;
        mdevVfioExit();
      });
      try {
        expect(() => sysfs.write(`${TYPES}/mtty-2/create`, UUID1)).not.toThrow();
        if (action === 'remove') sysfs.write(`/sys/bus/mdev/devices/${UUID1}/remove`, '1');
        expect(fired).toBe(1);
        expect(mdevDevices()).toEqual([]);
        expect(mdevReservedUuids()).toEqual([]);
        expect(sysfs.exists('/sys/class/mtty')).toBe(false);
        expect(sysfs.exists('/sys/bus/mdev')).toBe(false);
      } finally {
        stop();
      }
      // The class can register again: mtty loads again and creates the same UUID.
      const cls = new Class('mtty');
      cls.register();
      cls.unregister();
      device('mtty-2', UUID1);
      expect(mtty!.stateOf(mdevDevices()[0]!)?.nrPorts).toBe(2);
    });
  }
});

describe('mtty 16550A', () => {
  it('latches the divisor behind DLAB and reads it back', () => {
    const u = uart(device('mtty-1'));
    u.w(UART_LCR, UART_LCR_DLAB | UART_LCR_WLEN8);
    u.w(UART_DLL, 0x0c);
    u.w(UART_DLM, 0x01);
    expect(u.r(UART_DLL)).toBe(0x0c);
    expect(u.r(UART_DLM)).toBe(0x01);
    // With DLAB clear the same offsets are RX/TX and IER; the divisor is kept.
    u.w(UART_LCR, UART_LCR_WLEN8);
    expect(u.r(UART_LCR)).toBe(UART_LCR_WLEN8);
    expect(u.r(UART_IER)).toBe(0);
    u.w(UART_TX, 0x41);
    expect(u.r(UART_RX)).toBe(0x41);
    u.w(UART_LCR, UART_LCR_DLAB | UART_LCR_WLEN8);
    expect(u.r(UART_DLL)).toBe(0x0c);
    expect(u.r(UART_DLM)).toBe(0x01);
  });

  it('loops TX back to RX in order, keeps the scratch register, and reads 0 from an empty FIFO', () => {
    const h = device('mtty-1');
    const u = uart(h);
    u.w(UART_FCR, UART_FCR_ENABLE_FIFO);
    for (const c of 'hello') u.w(UART_TX, c.charCodeAt(0));
    let text = '';
    while (u.r(UART_LSR) & UART_LSR_DR) text += String.fromCharCode(u.r(UART_RX));
    expect(text).toBe('hello');
    const buf = new Uint8Array([0xaa]);
    h.pread(buf, port(0) + UART_RX);
    expect(buf[0]).toBe(0);
    u.w(UART_SCR, 0x5a);
    expect(u.r(UART_SCR)).toBe(0x5a);
  });

  it('sets LSR bits: THRE|TEMT when idle, DR with data, OE once after an overrun', () => {
    const u = uart(device('mtty-1'));
    expect(u.r(UART_LSR)).toBe(UART_LSR_THRE | UART_LSR_TEMT);
    u.w(UART_TX, 1);
    expect(u.r(UART_LSR)).toBe(UART_LSR_THRE | UART_LSR_TEMT | UART_LSR_DR);
    // FIFO disabled: one byte of holding; the second overruns and replaces it in RBR.
    u.w(UART_TX, 2);
    expect(u.r(UART_LSR)).toBe(UART_LSR_THRE | UART_LSR_TEMT | UART_LSR_DR | UART_LSR_OE);
    expect(u.r(UART_LSR)).toBe(UART_LSR_THRE | UART_LSR_TEMT | UART_LSR_DR);
    expect(u.r(UART_RX)).toBe(2);
    expect(u.r(UART_LSR)).toBe(UART_LSR_THRE | UART_LSR_TEMT);
  });

  it('overruns a full 16-byte FIFO: the 17th byte is lost, the first 16 are kept', () => {
    const u = uart(device('mtty-1'));
    u.w(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR);
    for (let i = 0; i < 17; i++) u.w(UART_TX, 0x30 + i);
    expect(u.r(UART_LSR) & UART_LSR_OE).toBe(UART_LSR_OE);
    const got: number[] = [];
    while (u.r(UART_LSR) & UART_LSR_DR) got.push(u.r(UART_RX));
    expect(got).toEqual(Array.from({ length: 16 }, (_, i) => 0x30 + i));
  });

  it('raises received-data at the FCR trigger level', () => {
    const u = uart(device('mtty-1'));
    u.w(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_TRIGGER_4);
    u.w(UART_IER, UART_IER_RDI);
    for (let i = 0; i < 3; i++) u.w(UART_TX, i);
    expect(u.r(UART_IIR)).toBe(UART_IIR_FIFO_ENABLED | UART_IIR_NO_INT);
    u.w(UART_TX, 3);
    expect(u.r(UART_IIR)).toBe(UART_IIR_FIFO_ENABLED | UART_IIR_RDI);
    u.r(UART_RX);
    expect(u.r(UART_IIR)).toBe(UART_IIR_FIFO_ENABLED | UART_IIR_NO_INT);
    u.w(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | UART_FCR_TRIGGER_14);
    for (let i = 0; i < 13; i++) u.w(UART_TX, i);
    expect(u.r(UART_IIR) & 0x0f).toBe(UART_IIR_NO_INT);
    u.w(UART_TX, 13);
    expect(u.r(UART_IIR) & 0x0f).toBe(UART_IIR_RDI);
    // Without FIFOs, IIR bits 7:6 are clear and one byte triggers.
    u.w(UART_FCR, 0);
    u.w(UART_TX, 1);
    expect(u.r(UART_IIR)).toBe(UART_IIR_RDI);
  });

  it('reports IIR sources by priority: line status, received data, THR empty, modem status', () => {
    const u = uart(device('mtty-1'));
    u.w(UART_FCR, UART_FCR_ENABLE_FIFO);
    u.w(UART_IER, UART_IER_RDI | UART_IER_THRI | UART_IER_RLSI | UART_IER_MSI);
    u.w(UART_MCR, UART_MCR_LOOP | UART_MCR_RTS); // modem lines change: a modem-status source
    for (let i = 0; i < 17; i++) u.w(UART_TX, i); // data and an overrun
    const id = () => u.r(UART_IIR) & 0x0f;
    expect(id()).toBe(UART_IIR_RLSI);
    u.r(UART_LSR); // clears OE
    expect(id()).toBe(UART_IIR_RDI);
    while (u.r(UART_LSR) & UART_LSR_DR) u.r(UART_RX);
    expect(id()).toBe(UART_IIR_THRI); // reading IIR with THRI as the source acknowledges it
    expect(id()).toBe(UART_IIR_MSI);
    u.r(UART_MSR);
    expect(id()).toBe(UART_IIR_NO_INT);
  });

  it('loops the modem lines through MCR in loopback mode, with deltas', () => {
    const u = uart(device('mtty-1'));
    expect(u.r(UART_MSR)).toBe(UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD);
    u.w(UART_MCR, UART_MCR_LOOP | UART_MCR_RTS | UART_MCR_DTR);
    expect(u.r(UART_MCR)).toBe(UART_MCR_LOOP | UART_MCR_RTS | UART_MCR_DTR);
    expect(u.r(UART_MSR)).toBe(UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DDCD);
    u.w(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT1 | UART_MCR_OUT2);
    expect(u.r(UART_MSR) & 0xf0).toBe(UART_MSR_RI | UART_MSR_DCD);
    u.w(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
    expect(u.r(UART_MSR) & UART_MSR_TERI).toBe(UART_MSR_TERI);
    expect(u.r(UART_MSR) & 0x0f).toBe(0);
  });

  it('keeps the two ports of mtty-2 apart', () => {
    const h = device('mtty-2');
    const a = uart(h, 0);
    const b = uart(h, 1);
    a.w(UART_TX, 0x61);
    b.w(UART_TX, 0x62);
    expect(a.r(UART_RX)).toBe(0x61);
    expect(b.r(UART_RX)).toBe(0x62);
    expect(a.r(UART_LSR) & UART_LSR_DR).toBe(0);
  });

  it('resets the UARTs on VFIO_DEVICE_RESET', () => {
    const h = device('mtty-1');
    const u = uart(h);
    u.w(UART_IER, 0x0f);
    u.w(UART_TX, 9);
    h.reset();
    expect(u.r(UART_IER)).toBe(0);
    expect(u.r(UART_LSR)).toBe(UART_LSR_THRE | UART_LSR_TEMT);
  });
});

describe('mtty interrupts', () => {
  it('delivers INTx through the eventfd, automasks it, and redelivers at unmask', () => {
    const h = device('mtty-1');
    const u = uart(h);
    const efd = eventfd();
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      data: [efd],
    });
    u.w(UART_IER, UART_IER_RDI);
    u.w(UART_TX, 0x31);
    expect(efd.total).toBe(1);
    u.r(UART_RX); // the line drops
    u.w(UART_TX, 0x32); // rises again, but INTx is still masked
    expect(efd.total).toBe(1);
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      count: 1,
    });
    expect(efd.total).toBe(2); // still asserted: delivered at unmask
    u.r(UART_RX);
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_UNMASK,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      data: [true],
    });
    expect(efd.total).toBe(2); // nothing pending: nothing delivered
    // An explicit mask holds the next interrupt back until unmask.
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      count: 1,
    });
    u.w(UART_TX, 0x33);
    expect(efd.total).toBe(2);
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      count: 1,
    });
    expect(efd.total).toBe(3);
    expect(efd.read()).toBe(3);
  });

  it('delivers each rising edge through MSI, which takes over from INTx', () => {
    const h = device('mtty-1');
    const u = uart(h);
    const intx = eventfd();
    const msi = eventfd();
    const seen: number[] = [];
    msi.onSignal(() => seen.push(u.r(UART_IIR) & 0x0f));
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      data: [intx],
    });
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_MSI_IRQ_INDEX,
      data: [msi],
    });
    u.w(UART_IER, UART_IER_RDI | UART_IER_THRI);
    // Enabling THRI with THR empty raises it at once; the listener reads IIR, which acknowledges it.
    u.w(UART_TX, 0x41);
    u.r(UART_RX);
    u.w(UART_TX, 0x42);
    // Two rising edges: THRI at IER enable, then RDI at the first byte. The line stays up
    // (THRI pending) through the RX read and the second byte: no third edge.
    expect(intx.total).toBe(0);
    expect(msi.total).toBe(2);
    expect(seen).toEqual([UART_IIR_THRI, UART_IIR_RDI]);
    // Disabling MSI (DATA_NONE, count 0) hands interrupts back to INTx.
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_MSI_IRQ_INDEX,
      count: 0,
    });
    u.r(UART_RX);
    u.r(UART_IIR);
    u.w(UART_TX, 0x43);
    expect(intx.total).toBe(1);
  });

  it('fires a software trigger, drops interrupts with no eventfd, and signals REQ on remove', () => {
    const h = device('mtty-1');
    const u = uart(h);
    const msi = eventfd();
    const req = eventfd();
    u.w(UART_IER, UART_IER_RDI);
    u.w(UART_TX, 1); // no eventfd yet: dropped, nothing thrown
    expect(mtty!.stateOf(h.mdev)!.irqStats.dropped).toBe(1);
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_MSI_IRQ_INDEX,
      data: [msi],
    });
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_MSI_IRQ_INDEX,
      count: 1,
    });
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_MSI_IRQ_INDEX,
      data: [false],
    });
    expect(msi.total).toBe(1);
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_REQ_IRQ_INDEX,
      data: [req],
    });
    sysfs.write(`/sys/bus/mdev/devices/${UUID1}/remove`, '1');
    // Signalled by the request op, before the handle was revoked and its eventfds dropped.
    expect(req.total).toBe(1);
    expect(errno(() => h.getInfo())).toBe('ENODEV');
  });

  it('signals no REQ when the device is removed closed', () => {
    const h = device('mtty-1');
    const req = eventfd();
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_REQ_IRQ_INDEX,
      data: [req],
    });
    open.pop()!.close();
    sysfs.write(`/sys/bus/mdev/devices/${UUID1}/remove`, '1');
    expect(req.total).toBe(0);
  });
});

describe('mtty SET_IRQS validation', () => {
  const trigger = (index: number, extra: Partial<Parameters<VfioDevice['setIrqs']>[0]> = {}) => ({
    flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
    index,
    count: 1,
    ...extra,
  });

  it('checks the vector range for DATA_NONE too, and fires nothing outside it', () => {
    const h = device('mtty-1');
    const intx = eventfd();
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      data: [intx],
    });
    expect(errno(() => h.setIrqs(trigger(VFIO_PCI_INTX_IRQ_INDEX, { start: 3 })))).toBe('EINVAL');
    expect(errno(() => h.setIrqs(trigger(VFIO_PCI_INTX_IRQ_INDEX, { count: 2 })))).toBe('EINVAL');
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
          index: VFIO_PCI_INTX_IRQ_INDEX,
          count: 9,
        }),
      ),
    ).toBe('EINVAL');
    expect(intx.total).toBe(0);
    expect(mtty!.stateOf(h.mdev)!.intxMasked).toBe(false);
    // Inside the range, the same trigger fires once.
    h.setIrqs(trigger(VFIO_PCI_INTX_IRQ_INDEX));
    expect(intx.total).toBe(1);
  });

  it('refuses an eventfd or bool trigger with count 0, and keeps the eventfd wired', () => {
    const h = device('mtty-1');
    const u = uart(h);
    const intx = eventfd();
    const msi = eventfd();
    for (const [index, efd] of [
      [VFIO_PCI_INTX_IRQ_INDEX, intx],
      [VFIO_PCI_MSI_IRQ_INDEX, msi],
    ] as const) {
      h.setIrqs({
        flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        index,
        data: [efd],
      });
      for (const type of [VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_BOOL]) {
        expect(
          errno(() =>
            h.setIrqs({
              flags: type | VFIO_IRQ_SET_ACTION_TRIGGER,
              index,
              count: 0,
              data: type === VFIO_IRQ_SET_DATA_EVENTFD ? [efd] : [true],
            }),
          ),
        ).toBe('EINVAL');
      }
    }
    const s = mtty!.stateOf(h.mdev)!;
    expect([s.intxEvtfd, s.msiEvtfd, s.irqIndex]).toEqual([intx, msi, VFIO_PCI_MSI_IRQ_INDEX]);
    u.w(UART_IER, UART_IER_RDI);
    u.w(UART_TX, 1);
    expect(msi.total).toBe(1);
    // Only DATA_NONE with count 0 disables: MSI off hands the next edge to INTx.
    h.setIrqs(trigger(VFIO_PCI_MSI_IRQ_INDEX, { count: 0 }));
    expect(s.msiEvtfd).toBeNull();
    u.r(UART_RX);
    u.w(UART_TX, 2);
    expect(intx.total).toBe(1);
  });

  it('masks and unmasks INTx with exactly one vector, never through an eventfd', () => {
    const h = device('mtty-1');
    const intx = eventfd();
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      data: [intx],
    });
    const s = mtty!.stateOf(h.mdev)!;
    for (const action of [VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_UNMASK]) {
      expect(
        errno(() =>
          h.setIrqs({
            flags: VFIO_IRQ_SET_DATA_NONE | action,
            index: VFIO_PCI_INTX_IRQ_INDEX,
            count: 0,
          }),
        ),
      ).toBe('EINVAL');
      expect(
        errno(() =>
          h.setIrqs({
            flags: VFIO_IRQ_SET_DATA_EVENTFD | action,
            index: VFIO_PCI_INTX_IRQ_INDEX,
            data: [intx],
          }),
        ),
      ).toBe('ENOTTY');
      expect(
        errno(() =>
          h.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | action, index: VFIO_PCI_REQ_IRQ_INDEX }),
        ),
      ).toBe('ENOTTY');
    }
    expect(s.intxMasked).toBe(false);
    // A request with no action, or with two, matches no handler.
    expect(errno(() => h.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE, index: 0, count: 1 }))).toBe(
      'ENOTTY',
    );
    expect(
      errno(() =>
        h.setIrqs({
          flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK,
          index: 0,
          count: 1,
        }),
      ),
    ).toBe('ENOTTY');
    expect(s.intxMasked).toBe(false);
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      data: [false],
    });
    expect(s.intxMasked).toBe(false);
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      data: [true],
    });
    expect(s.intxMasked).toBe(true);
    expect(intx.total).toBe(0);
  });

  it('accepts an argsz larger than the request needs', () => {
    const h = device('mtty-1');
    const msi = eventfd();
    const buf = new Uint8Array(64);
    buf.set(
      encodeIrqSet({
        flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        index: VFIO_PCI_MSI_IRQ_INDEX,
        data: [msi],
      }),
    );
    new DataView(buf.buffer).setUint32(0, buf.length, true);
    expect(h.ioctl(VFIO_DEVICE_SET_IRQS, buf)).toBe(0);
    h.setIrqs(trigger(VFIO_PCI_MSI_IRQ_INDEX));
    expect(msi.total).toBe(1);
  });
});

describe('mtty close', () => {
  it('drops the eventfds at the last close: a new session gets no signal on the old ones', () => {
    const h = device('mtty-1');
    const intx = eventfd();
    const req = eventfd();
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_INTX_IRQ_INDEX,
      data: [intx],
    });
    h.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: VFIO_PCI_REQ_IRQ_INDEX,
      data: [req],
    });
    // A second file keeps the device open: closing it changes nothing.
    const other = vfioDeviceOpen(UUID1);
    other.close();
    const s = mtty!.stateOf(h.mdev)!;
    expect(s.intxEvtfd).toBe(intx);
    const u = uart(h);
    u.w(UART_IER, UART_IER_RDI);
    u.w(UART_TX, 1); // delivered, and INTx automasked
    expect([intx.total, s.intxMasked]).toEqual([1, true]);
    open.pop()!.close();
    expect([s.intxEvtfd, s.msiEvtfd, s.reqEvtfd, s.irqIndex, s.intxMasked]).toEqual([
      null,
      null,
      null,
      -1,
      false,
    ]);
    // The next session raises the line without an eventfd: dropped, the old eventfd is silent.
    const next = vfioDeviceOpen(UUID1);
    open.push(next);
    const v = uart(next);
    v.r(UART_RX);
    v.w(UART_TX, 2);
    expect(intx.total).toBe(1);
    expect(s.irqStats.dropped).toBe(1);
    sysfs.write(`/sys/bus/mdev/devices/${UUID1}/remove`, '1');
    expect(req.total).toBe(0);
  });
});

describe('mtty unload', () => {
  it('removes every device and the parent at exit, and can load again', () => {
    device('mtty-2');
    mttyExit(mtty!);
    mtty = null;
    expect(sysfs.exists('/sys/devices/virtual/mtty/mtty')).toBe(false);
    expect(sysfs.exists('/sys/class/mtty')).toBe(false);
    expect(mdevDevices()).toEqual([]);
    expect(errno(() => open[0]!.read(port(0), 1))).toBe('ENODEV');
    load();
    expect(errno(() => mttyInit())).toBe('EEXIST');
  });
});
