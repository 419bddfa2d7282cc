import { Class, Device, KernelError } from '@mdev/driver-core';
import {
  type MdevDevice,
  type MdevType,
  type MdevTypeAttribute,
  mdevGetDrvdata,
  mdevSetDrvdata,
} from '@mdev/mdev-core';
import {
  type Eventfd,
  eventfdCtxFdget,
  type MdevVfioOps,
  mdevVfioRegisterDevice,
  mdevVfioSetOps,
  mdevVfioUnregisterDevice,
  VFIO_DEVICE_API_PCI_STRING,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_NUM_REGIONS,
  VFIO_PCI_REQ_IRQ_INDEX,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  type VfioIrqSet,
  vfioDeviceInfo,
  vfioIrqInfo,
  vfioIrqSet,
  vfioIrqSetData,
  vfioPciIndexToOffset,
  vfioPciOffsetInRegion,
  vfioPciOffsetToIndex,
  vfioRegionInfo,
  vfioRegionInfoReply,
  vfioSetIrqsValidateAndPrepare,
  vfioSplitAccess,
} from '@mdev/mdev-vfio';
import { checkAccess, checkIoctl } from '../args';
import {
  PCI_CLASS_DEVICE,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_DEVICE_ID,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
  PciConfigSpace,
} from '../pci';
import { UART_NR_REGS } from './serial_reg';
import { Uart16550 } from './uart';

/** The class and parent device name (MTTY_CLASS_NAME, MTTY_NAME). */
export const MTTY_NAME = 'mtty';
/** The size of the config region (MTTY_CONFIG_SPACE_SIZE). */
export const MTTY_CONFIG_SPACE_SIZE = 0xff;
/** The size of each port's I/O BAR (MTTY_IO_BAR_SIZE): the eight UART registers. */
export const MTTY_IO_BAR_SIZE = UART_NR_REGS;
/** The ports all mtty devices of a parent share (MAX_MTTYS). */
export const MAX_MTTYS = 24;
export const MTTY_VENDOR_ID = 0x4348;
export const MTTY_DEVICE_ID = 0x3253;
export const MTTY_REVISION = 0x10;
/** Programming interface 0x02: 16550-compatible. */
export const MTTY_PROG_IF = 0x02;
/** Class 0x07 (simple communication controller), subclass 0x00 (serial). */
export const MTTY_CLASS = 0x0700;
/** The vendor-specific label at 0x60. */
export const MTTY_LABEL_OFFSET = 0x60;
export const MTTY_LABEL = 'PCI Serial/UART';

/** The mtty types: group name, ports, human name. */
export const MTTY_TYPES = [
  { group: '1', ports: 1, name: 'Single port serial' },
  { group: '2', ports: 2, name: 'Dual port serial' },
] as const;

/** What an mtty device does with an interrupt no one can receive (no eventfd set). */
export interface MttyIrqStats {
  delivered: number;
  /** Raised while INTx was masked: delivered at unmask if still asserted. */
  masked: number;
  /** Raised with no eventfd for the active index. */
  dropped: number;
}

/** The state of one mtty device (struct mdev_state). */
export class MttyState {
  readonly mdev: MdevDevice;
  readonly nrPorts: number;
  readonly config = new PciConfigSpace(256);
  readonly ports: Uart16550[];
  intxEvtfd: Eventfd | null = null;
  msiEvtfd: Eventfd | null = null;
  reqEvtfd: Eventfd | null = null;
  /** The index interrupts go to: INTx, MSI, or -1 before the user set an eventfd. */
  irqIndex = -1;
  intxMasked = false;
  /** Open device files (the kernel calls close_device at the last close). */
  openCount = 0;
  /**
   * num_irqs of the last VFIO_DEVICE_GET_INFO answered (mdev_state->dev_info): 0 until the user
   * asked, so GET_IRQ_INFO before GET_INFO is EINVAL, as in 5.4 mtty.
   */
  devInfoNumIrqs = 0;
  readonly irqStats: MttyIrqStats = { delivered: 0, masked: 0, dropped: 0 };
  private lineHigh = false;

  constructor(mdev: MdevDevice, nrPorts: number) {
    this.mdev = mdev;
    this.nrPorts = nrPorts;
    this.ports = Array.from({ length: nrPorts }, () => new Uart16550());
    this.createConfigSpace();
  }

  /** The config space bytes of mtty_create_config_space(). */
  private createConfigSpace(): void {
    const c = this.config;
    c.setU16(PCI_VENDOR_ID, MTTY_VENDOR_ID);
    c.setU16(PCI_DEVICE_ID, MTTY_DEVICE_ID);
    c.setU16(PCI_COMMAND, PCI_COMMAND_IO);
    c.setU16(PCI_STATUS, 0x0200); // DEVSEL medium timing, no capability list
    c.setU8(PCI_REVISION_ID, MTTY_REVISION);
    c.setU8(PCI_CLASS_PROG, MTTY_PROG_IF);
    c.setU16(PCI_CLASS_DEVICE, MTTY_CLASS);
    for (let i = 0; i < this.nrPorts; i++) {
      c.defineBar(i, { size: MTTY_IO_BAR_SIZE, io: true });
    }
    c.setU16(PCI_SUBSYSTEM_VENDOR_ID, MTTY_VENDOR_ID);
    c.setU16(PCI_SUBSYSTEM_ID, MTTY_DEVICE_ID);
    c.setU8(PCI_INTERRUPT_PIN, 0x01); // INTA#
    // Vendor-specific bytes of the sample.
    c.setU8(0x40, 0x23);
    c.setU8(0x43, 0x80);
    c.setU8(0x44, 0x23);
    c.setU8(0x48, 0x23);
    c.setU8(0x4c, 0x23);
    c.setAscii(MTTY_LABEL_OFFSET, MTTY_LABEL);
  }

  /** VFIO_DEVICE_RESET: the UARTs return to their power-on state; interrupts stay wired. */
  reset(): void {
    for (const p of this.ports) p.reset();
    this.lineHigh = false;
  }

  /** A config-space write as handle_pci_cfg_write() keeps it. */
  private configWrite(offset: number, buf: Uint8Array): void {
    if (offset === PCI_INTERRUPT_LINE) {
      this.config.setU8(PCI_INTERRUPT_LINE, buf[0]!);
      return;
    }
    const bar = PciConfigSpace.barIndexAt(offset);
    if (bar !== null && buf.length === 4) {
      // Unimplemented BARs (BAR1 of a one-port card, BAR2..5) read back 0.
      this.config.writeBar(bar, PciConfigSpace.valueOf(buf));
    }
    // Everything else (command, status, pin, ...) is read-only here.
  }

  /** One naturally aligned access at file offset `pos`; false for an offset nothing decodes. */
  access(piece: Uint8Array, pos: number, write: boolean): boolean {
    const index = vfioPciOffsetToIndex(pos);
    const offset = vfioPciOffsetInRegion(pos);
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) {
      if (offset + piece.length > MTTY_CONFIG_SPACE_SIZE) return false;
      if (write) this.configWrite(offset, piece);
      else this.config.read(offset, piece);
      return true;
    }
    if (index >= VFIO_PCI_BAR0_REGION_INDEX && index < this.nrPorts) {
      if (offset + piece.length > MTTY_IO_BAR_SIZE) return false;
      const port = this.ports[index]!;
      // A wider I/O access touches consecutive registers, as inw/inl on the ports would.
      for (let i = 0; i < piece.length; i++) {
        if (write) port.write(offset + i, piece[i]!);
        else piece[i] = port.read(offset + i);
      }
      this.updateIrq();
      return true;
    }
    return false;
  }

  /** Re-evaluates the interrupt line after a register access: a rising edge raises it. */
  private updateIrq(): void {
    const high = this.ports.some((p) => p.interruptPending);
    const rose = high && !this.lineHigh;
    this.lineHigh = high;
    if (rose) this.raise();
  }

  /** mtty_trigger_interrupt(): to the active index's eventfd; INTx is automasked. */
  private raise(): void {
    if (this.irqIndex === VFIO_PCI_MSI_IRQ_INDEX && this.msiEvtfd) {
      this.msiEvtfd.signal(1);
      this.irqStats.delivered++;
      return;
    }
    if (this.irqIndex === VFIO_PCI_INTX_IRQ_INDEX && this.intxEvtfd) {
      if (this.intxMasked) {
        this.irqStats.masked++;
        return;
      }
      // AUTOMASKED: the line stays masked until the user unmasks it after servicing.
      this.intxMasked = true;
      this.intxEvtfd.signal(1);
      this.irqStats.delivered++;
      return;
    }
    this.irqStats.dropped++;
  }

  private unmaskIntx(): void {
    this.intxMasked = false;
    // INTx is level-triggered: a source still asserted fires again at unmask.
    if (this.irqIndex === VFIO_PCI_INTX_IRQ_INDEX && this.ports.some((p) => p.interruptPending)) {
      this.lineHigh = true;
      this.raise();
    }
  }

  private fireTest(index: number): void {
    const efd = index === VFIO_PCI_INTX_IRQ_INDEX ? this.intxEvtfd : this.msiEvtfd;
    if (index === VFIO_PCI_INTX_IRQ_INDEX && this.intxMasked) {
      this.irqStats.masked++;
      return;
    }
    if (!efd) {
      this.irqStats.dropped++;
      return;
    }
    if (index === VFIO_PCI_INTX_IRQ_INDEX) this.intxMasked = true;
    efd.signal(1);
    this.irqStats.delivered++;
  }

  /**
   * VFIO_DEVICE_SET_IRQS for INTx, MSI and REQ, after vfioSetIrqsValidateAndPrepare() held the
   * vectors to the index's one (start 0, count 0 or 1). As vfio_pci_set_irqs_ioctl(): ENOTTY
   * when the flags name no action or several, since no handler matches.
   */
  setIrqs(hdr: VfioIrqSet, data: number[]): void {
    const action = hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    const type = hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
    if (action === VFIO_IRQ_SET_ACTION_MASK || action === VFIO_IRQ_SET_ACTION_UNMASK) {
      this.setIntxMask(hdr, action, type, data);
    } else if (action === VFIO_IRQ_SET_ACTION_TRIGGER) {
      this.setTrigger(hdr, type, data);
    } else {
      throw new KernelError('ENOTTY', `mtty: SET_IRQS action 0x${action.toString(16)}`);
    }
  }

  /**
   * MASK/UNMASK (vfio_pci_set_intx_mask/unmask, mtty_set_irqs upstream): only INTx is maskable,
   * MSI and REQ have no handler (ENOTTY). Exactly the one vector (EINVAL otherwise); DATA_NONE
   * acts, DATA_BOOL acts when true, and an eventfd (an irqfd unmask) is not supported (ENOTTY).
   */
  private setIntxMask(hdr: VfioIrqSet, action: number, type: number, data: number[]): void {
    if (hdr.index !== VFIO_PCI_INTX_IRQ_INDEX) {
      throw new KernelError('ENOTTY', `mtty: irq index ${hdr.index} cannot be masked`);
    }
    if (hdr.start !== 0 || hdr.count !== 1) {
      throw new KernelError('EINVAL', `mtty: INTx mask needs start 0, count 1`);
    }
    if (type === VFIO_IRQ_SET_DATA_EVENTFD) {
      throw new KernelError('ENOTTY', 'mtty: no INTx mask or unmask through an eventfd');
    }
    if (type === VFIO_IRQ_SET_DATA_BOOL && data[0] !== 1) return;
    if (action === VFIO_IRQ_SET_ACTION_MASK) this.intxMasked = true;
    else this.unmaskIntx();
  }

  /**
   * TRIGGER: DATA_NONE with count 0 disables the index; every other request needs the one
   * vector (EINVAL for count 0, which would otherwise read a data array that is not there).
   * An eventfd (or -1) replaces the index's eventfd; DATA_NONE, or DATA_BOOL true, fires a
   * test interrupt (vfio-pci's loopback testing).
   */
  private setTrigger(hdr: VfioIrqSet, type: number, data: number[]): void {
    if (hdr.count === 0) {
      if (type !== VFIO_IRQ_SET_DATA_NONE) {
        throw new KernelError('EINVAL', 'mtty: a trigger with data needs count 1');
      }
      this.disable(hdr.index);
      return;
    }
    if (type === VFIO_IRQ_SET_DATA_EVENTFD) {
      const fd = data[0]!;
      const efd = fd >= 0 ? eventfdCtxFdget(fd) : null;
      if (hdr.index === VFIO_PCI_INTX_IRQ_INDEX) {
        this.intxEvtfd = efd;
        this.intxMasked = false;
      } else if (hdr.index === VFIO_PCI_MSI_IRQ_INDEX) {
        this.msiEvtfd = efd;
      } else {
        this.reqEvtfd = efd;
        return;
      }
      this.selectIndex();
      return;
    }
    const asserted = type === VFIO_IRQ_SET_DATA_NONE || data[0] === 1;
    if (!asserted) return;
    if (hdr.index === VFIO_PCI_REQ_IRQ_INDEX) this.reqEvtfd?.signal(1);
    else this.fireTest(hdr.index);
  }

  /** Drops the eventfd of irq index `index` (mtty_disable_intx/msi/req). */
  private disable(index: number): void {
    if (index === VFIO_PCI_INTX_IRQ_INDEX) {
      this.intxEvtfd = null;
      this.intxMasked = false;
    } else if (index === VFIO_PCI_MSI_IRQ_INDEX) {
      this.msiEvtfd = null;
    } else {
      this.reqEvtfd = null;
    }
    this.selectIndex();
  }

  /** MSI wins while it has an eventfd (the guest enabled MSI), else INTx, else none. */
  private selectIndex(): void {
    this.irqIndex = this.msiEvtfd
      ? VFIO_PCI_MSI_IRQ_INDEX
      : this.intxEvtfd
        ? VFIO_PCI_INTX_IRQ_INDEX
        : -1;
  }

  /** The size of region `index` (0 for the regions mtty lacks). */
  regionSize(index: number): number {
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) return MTTY_CONFIG_SPACE_SIZE;
    if (index >= VFIO_PCI_BAR0_REGION_INDEX && index < this.nrPorts) return MTTY_IO_BAR_SIZE;
    return 0;
  }

  /**
   * Mirrors mtty_request(): the device is being removed while open, so the user is asked to
   * release it through the REQ eventfd (when one is set).
   */
  request(): void {
    this.reqEvtfd?.signal(1);
  }

  /** The user opened the device file. */
  open(): void {
    this.openCount++;
  }

  /**
   * The user closed the device file. At the last close, as upstream mtty_close() does, the
   * eventfds are dropped, so the next session starts with none: INTx, MSI and REQ unset,
   * irqIndex -1, INTx unmasked.
   */
  release(): void {
    if (this.openCount > 0) this.openCount--;
    if (this.openCount === 0) this.teardown();
  }

  /** Drops every eventfd (last close, and remove). */
  teardown(): void {
    this.intxEvtfd = this.msiEvtfd = this.reqEvtfd = null;
    this.irqIndex = -1;
    this.intxMasked = false;
  }
}

/** The vectors each irq index has (INTx, MSI and REQ: one; MSI-X and ERR: none). */
function irqCount(index: number): number {
  return index === VFIO_PCI_INTX_IRQ_INDEX ||
    index === VFIO_PCI_MSI_IRQ_INDEX ||
    index === VFIO_PCI_REQ_IRQ_INDEX
    ? 1
    : 0;
}

function stateOf(mdev: MdevDevice): MttyState {
  const s = mdevGetDrvdata<MttyState | null>(mdev);
  if (!s) throw new KernelError('ENODEV', `mtty: ${mdev.uuid} has no state`);
  return s;
}

function mttyIoctl(mdev: MdevDevice, cmd: number, arg: Uint8Array | null): number {
  const s = stateOf(mdev);
  switch (cmd) {
    case VFIO_DEVICE_GET_INFO: {
      const req = vfioDeviceInfo.copyFromUser(arg);
      if (req.argsz < vfioDeviceInfo.minsz) throw new KernelError('EINVAL', 'GET_INFO: argsz');
      // mtty_get_device_info() (5.4): FLAGS_PCI only. VFIO_DEVICE_RESET works all the same.
      vfioDeviceInfo.copyToUser(arg, {
        argsz: req.argsz,
        flags: VFIO_DEVICE_FLAGS_PCI,
        numRegions: VFIO_PCI_NUM_REGIONS,
        numIrqs: VFIO_PCI_NUM_IRQS,
      });
      s.devInfoNumIrqs = VFIO_PCI_NUM_IRQS;
      return 0;
    }
    case VFIO_DEVICE_GET_REGION_INFO: {
      const req = vfioRegionInfo.copyFromUser(arg);
      if (req.argsz < vfioRegionInfo.minsz) throw new KernelError('EINVAL', 'REGION_INFO: argsz');
      if (req.index >= VFIO_PCI_NUM_REGIONS) {
        throw new KernelError('EINVAL', `REGION_INFO: no region ${req.index}`);
      }
      const size = s.regionSize(req.index);
      // A deliberate departure: 5.4 mtty reports READ|WRITE for every region, the absent ones
      // (size 0) included; here an absent region reports flags 0, as vfio-pci reports a BAR the
      // device does not implement, so that no user tries to access it.
      vfioRegionInfoReply(arg, req, {
        flags: size ? VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE : 0,
        index: req.index,
        size,
        offset: vfioPciIndexToOffset(req.index),
      });
      return 0;
    }
    case VFIO_DEVICE_GET_IRQ_INFO: {
      const req = vfioIrqInfo.copyFromUser(arg);
      if (req.argsz < vfioIrqInfo.minsz) throw new KernelError('EINVAL', 'IRQ_INFO: argsz');
      // 5.4 mtty_ioctl() checks the index against the num_irqs of a GET_INFO answered before.
      if (req.index >= s.devInfoNumIrqs) {
        throw new KernelError('EINVAL', `IRQ_INFO: index ${req.index} before or past GET_INFO`);
      }
      if (irqCount(req.index) === 0) {
        throw new KernelError('EINVAL', `IRQ_INFO: no irq index ${req.index}`);
      }
      const flags =
        VFIO_IRQ_INFO_EVENTFD |
        (req.index === VFIO_PCI_INTX_IRQ_INDEX
          ? VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
          : VFIO_IRQ_INFO_NORESIZE);
      vfioIrqInfo.copyToUser(arg, { argsz: req.argsz, flags, index: req.index, count: 1 });
      return 0;
    }
    case VFIO_DEVICE_SET_IRQS: {
      const hdr = vfioIrqSet.copyFromUser(arg);
      // As vfio-pci: the range is checked against the vectors of the index named (MSI-X and
      // ERR have none, so any request on them is EINVAL), not against the number of indexes.
      const size = vfioSetIrqsValidateAndPrepare(hdr, irqCount(hdr.index), VFIO_PCI_NUM_IRQS);
      s.setIrqs(hdr, vfioIrqSetData(arg, hdr, size));
      return 0;
    }
    case VFIO_DEVICE_RESET:
      s.reset();
      return 0;
    default:
      throw new KernelError('ENOTTY', `mtty: unknown ioctl 0x${cmd.toString(16)}`);
  }
}

/** struct mdev_vfio_ops of mtty: open, release, read, write, ioctl, request (no mmap). */
const mttyVfioOps: MdevVfioOps = {
  open: (mdev) => stateOf(mdev).open(),
  release(mdev) {
    mdevGetDrvdata<MttyState | null>(mdev)?.release();
  },
  request: (mdev) => mdevGetDrvdata<MttyState | null>(mdev)?.request(),
  read(mdev, buf, pos) {
    checkAccess(MTTY_NAME, buf, pos);
    return vfioSplitAccess(buf, pos, (piece, at) => stateOf(mdev).access(piece, at, false));
  },
  write(mdev, buf, pos) {
    checkAccess(MTTY_NAME, buf, pos);
    return vfioSplitAccess(buf, pos, (piece, at) => stateOf(mdev).access(piece, at, true));
  },
  ioctl(mdev, cmd, arg) {
    checkIoctl(MTTY_NAME, cmd);
    return mttyIoctl(mdev, cmd, arg);
  },
};

/** A loaded mtty driver: its parent device, and `exit()` to unload it. */
export interface MttyHandle {
  readonly parent: Device;
  /** The sysfs path of the parent, e.g. /sys/devices/virtual/mtty/mtty. */
  readonly path: string;
  /** The state of an mtty device of this parent (for inspection), or undefined. */
  stateOf(mdev: MdevDevice): MttyState | undefined;
  /** Removes every mtty device and the parent (module exit). */
  exit(): void;
}

export interface MttyOptions {
  /** The ports shared by all devices of the parent (MAX_MTTYS, 24). */
  maxPorts?: number;
}

/**
 * Mirrors mtty_dev_init(): loads the mtty sample: class `mtty`, parent `/sys/devices/virtual/mtty/mtty`
 * registered on the VFIO mediated bus with types `mtty-1` and `mtty-2`. EEXIST when it is loaded
 * already.
 */
export function mttyInit(options: MttyOptions = {}): MttyHandle {
  const maxPorts = options.maxPorts ?? MAX_MTTYS;
  const states = new Set<MttyState>();
  const usedPorts = () => [...states].reduce((n, s) => n + s.nrPorts, 0);
  const cls = new Class(MTTY_NAME);
  cls.register();
  const parent = new Device({ name: MTTY_NAME, class: cls });
  try {
    parent.add();
  } catch (err) {
    cls.unregister();
    throw err;
  }

  const portsOf = (type: MdevType): number => {
    const t = MTTY_TYPES.find((x) => x.group === type.group.name);
    if (!t) throw new KernelError('EINVAL', `mtty: unknown type ${type.name}`);
    return t.ports;
  };
  const typeAttrs: MdevTypeAttribute[] = [
    {
      name: 'name',
      mode: 0o444,
      show: (t) => `${MTTY_TYPES.find((x) => x.group === t.group.name)!.name}\n`,
    },
    { name: 'device_api', mode: 0o444, show: () => `${VFIO_DEVICE_API_PCI_STRING}\n` },
    {
      name: 'available_instances',
      mode: 0o444,
      show: (t) => `${Math.floor((maxPorts - usedPorts()) / portsOf(t))}\n`,
    },
  ];

  try {
    mdevVfioRegisterDevice(parent, {
      devAttrGroups: [
        {
          name: 'mtty_dev',
          attrs: [{ name: 'sample_mtty_dev', mode: 0o444, show: () => 'This is phy device\n' }],
        },
      ],
      supportedTypeGroups: MTTY_TYPES.map((t) => ({ name: t.group, attrs: typeAttrs })),
      create(type, mdev) {
        const ports = portsOf(type);
        // available_instances is enforced here (the 2019 sample only reported it).
        if (usedPorts() + ports > maxPorts) {
          throw new KernelError('ENOSPC', `mtty: no ports left for ${type.name}`);
        }
        const state = new MttyState(mdev, ports);
        // The sample's per-mdev group vendor/sample_mdev_dev; added with the device.
        mdev.groups = [
          ...mdev.groups,
          {
            name: 'vendor',
            attrs: [
              { name: 'sample_mdev_dev', mode: 0o444, show: () => `This is MDEV ${mdev.uuid}\n` },
            ],
          },
        ];
        states.add(state);
        mdevSetDrvdata(mdev, state);
        mdevVfioSetOps(mdev, mttyVfioOps);
      },
      remove(mdev) {
        const state = mdevGetDrvdata<MttyState | null>(mdev);
        if (!state || !states.has(state)) {
          throw new KernelError('EINVAL', `mtty: ${mdev.uuid} is not ours`);
        }
        // The user was asked through REQ (the `request` op) before the handles were revoked.
        state.teardown();
        states.delete(state);
        mdevSetDrvdata(mdev, null);
      },
    });
  } catch (err) {
    parent.unregister();
    cls.unregister();
    throw err;
  }

  let loaded = true;
  return {
    parent,
    path: parent.path,
    stateOf(mdev) {
      const s = mdevGetDrvdata<MttyState | null>(mdev);
      return s && states.has(s) ? s : undefined;
    },
    exit() {
      if (!loaded) return;
      loaded = false;
      mdevVfioUnregisterDevice(parent);
      parent.unregister();
      cls.unregister();
    },
  };
}

/** Mirrors mtty_dev_exit(): every mtty device is removed, then the parent and its class. */
export function mttyExit(mtty: MttyHandle): void {
  mtty.exit();
}
