import { parseArgs } from 'node:util';
import { type Device, KernelError, sysfs } from '@mdev/driver-core';
import { mdevDeviceRemove, mdevReservedUuids } from '@mdev/mdev-core';
import {
  mdevVfioExit,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  type VfioDevice,
  vfioDeviceOpen,
  vfioMdevDevices,
} from '@mdev/mdev-vfio';
import {
  MBOCHS_TYPES,
  MDPY_TYPES,
  MTTY_TYPES,
  mbochsInit,
  mdpyInit,
  mttyInit,
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_IO_FLAGS,
  PCI_BASE_ADDRESS_MEM_FLAGS,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_CLASS_DEVICE,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_INTERRUPT_PIN,
  PCI_REVISION_ID,
  PCI_STD_HEADER_SIZEOF,
  PCI_STD_NUM_BARS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from '@mdev/samples-legacy';
import type { CommandIo } from '../io';
import { UsageError } from '../usage';

export const summary = 'list every VFIO mdev from its PCI config space, like lspci';

export const usage = `usage: mdev lspci [-v] [--json] [--type TYPE]...

Lists every mdev bound to vfio_mdev, reading its PCI config space through its VFIO device.
When none exists, loads the VFIO samples (mtty, mdpy, mbochs), creates one mdev of each
available type (or of each --type given), lists them and removes them again.

  -v, --verbose   subsystem, interrupt pin, command bits, BARs with their sizes
  --json          one JSON object per device instead of text
  --type TYPE     create an mdev of TYPE for the listing (repeatable), e.g. mtty-2
`;

/** PCI class names (base << 8 | sub) as lspci prints them. */
const CLASS_NAMES: Record<number, string> = {
  0: 'Non-VGA unclassified device',
  256: 'SCSI storage controller',
  512: 'Ethernet controller',
  768: 'VGA compatible controller',
  896: 'Display controller',
  1792: 'Serial controller',
  1793: 'Parallel controller',
  1920: 'Communication controller',
  2176: 'System peripheral',
  3075: 'USB controller',
};
const BASE_CLASS_NAMES: Record<number, string> = {
  0: 'Unclassified device',
  1: 'Mass storage controller',
  2: 'Network controller',
  3: 'Display controller',
  7: 'Communication controller',
  8: 'Generic system peripheral',
  12: 'Serial bus controller',
};
/** Programming interfaces of serial controllers (class 0x0700). */
const SERIAL_PROG_IF: Record<number, string> = {
  0: '8250',
  1: '16450',
  2: '16550',
  3: '16650',
  4: '16750',
  5: '16850',
  6: '16950',
};

/** One BAR as lspci -v shows it. */
export interface LspciBar {
  index: number;
  io: boolean;
  address: number;
  size: number;
  prefetch: boolean;
  bits: 32 | 64;
}

/** What the listing knows of one device, from its config space. */
export interface LspciEntry {
  uuid: string;
  type: string;
  parent: string;
  vendor: number;
  device: number;
  subsystemVendor: number;
  subsystemDevice: number;
  revision: number;
  classCode: number;
  progIf: number;
  className: string;
  progIfName: string | null;
  command: number;
  interruptPin: number;
  bars: LspciBar[];
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

function className(code: number): string {
  return CLASS_NAMES[code] ?? BASE_CLASS_NAMES[code >> 8] ?? `Class ${hex(code, 4)}`;
}

/**
 * Sizes a BAR the way an OS does: save it, write all-ones, read the mask back, restore it.
 * Returns the BAR or null when it is not implemented (reads 0 after all-ones).
 */
function probeBar(dev: VfioDevice, cfg: number, index: number): LspciBar | null {
  const at = cfg + PCI_BASE_ADDRESS_0 + index * 4;
  const saved = dev.readU32(at);
  dev.writeU32(at, 0xffffffff);
  const mask = dev.readU32(at);
  dev.writeU32(at, saved);
  if (mask === 0) return null;
  const io = (saved & PCI_BASE_ADDRESS_SPACE_IO) !== 0;
  const flagBits = io ? PCI_BASE_ADDRESS_IO_FLAGS : PCI_BASE_ADDRESS_MEM_FLAGS;
  const size = ((~(mask & ~flagBits) >>> 0) + 1) >>> 0;
  return {
    index,
    io,
    address: (saved & ~flagBits) >>> 0,
    size: size === 0 ? 2 ** 32 : size,
    prefetch: !io && (saved & PCI_BASE_ADDRESS_MEM_PREFETCH) !== 0,
    bits: !io && (saved & 0x6) === PCI_BASE_ADDRESS_MEM_TYPE_64 ? 64 : 32,
  };
}

/** Reads one device's identity and BARs through its VFIO config region. */
export function lspciEntry(dev: VfioDevice): LspciEntry {
  const region = dev.getRegionInfo(VFIO_PCI_CONFIG_REGION_INDEX);
  if (region.size < PCI_STD_HEADER_SIZEOF) {
    throw new KernelError('EIO', `lspci: ${dev.uuid} has a ${region.size}-byte config space`);
  }
  const cfg = region.offset;
  const header = dev.read(cfg, PCI_STD_HEADER_SIZEOF);
  const dv = new DataView(header.buffer, header.byteOffset, header.length);
  const classCode = dv.getUint16(PCI_CLASS_DEVICE, true);
  const progIf = dv.getUint8(PCI_CLASS_PROG);
  const bars: LspciBar[] = [];
  for (let i = 0; i < PCI_STD_NUM_BARS; i++) {
    const bar = probeBar(dev, cfg, VFIO_PCI_BAR0_REGION_INDEX + i);
    if (bar) {
      bars.push(bar);
      if (bar.bits === 64) i++; // the upper half lives in the next BAR register
    }
  }
  const mdev = dev.mdev;
  return {
    uuid: mdev.uuid,
    type: mdev.type.name,
    parent: mdev.mdevParent.dev.name,
    vendor: dv.getUint16(PCI_VENDOR_ID, true),
    device: dv.getUint16(PCI_DEVICE_ID, true),
    subsystemVendor: dv.getUint16(PCI_SUBSYSTEM_VENDOR_ID, true),
    subsystemDevice: dv.getUint16(PCI_SUBSYSTEM_ID, true),
    revision: dv.getUint8(PCI_REVISION_ID),
    classCode,
    progIf,
    className: className(classCode),
    progIfName: classCode === 0x0700 ? (SERIAL_PROG_IF[progIf] ?? null) : null,
    command: dv.getUint16(PCI_COMMAND, true),
    interruptPin: dv.getUint8(PCI_INTERRUPT_PIN),
    bars,
  };
}

function sizeText(size: number): string {
  for (const [unit, n] of [
    ['G', 2 ** 30],
    ['M', 2 ** 20],
    ['K', 2 ** 10],
  ] as const) {
    if (size >= n && size % n === 0) return `${size / n}${unit}`;
  }
  return String(size);
}

/** The one-line lspci form: "<uuid> Serial controller: Device 4348:3253 (rev 10) (prog-if 02 [16550])". */
export function formatEntry(e: LspciEntry): string {
  let line = `${e.uuid} ${e.className}: Device ${hex(e.vendor, 4)}:${hex(e.device, 4)}`;
  if (e.revision) line += ` (rev ${hex(e.revision, 2)})`;
  if (e.progIf) {
    line += ` (prog-if ${hex(e.progIf, 2)}${e.progIfName ? ` [${e.progIfName}]` : ''})`;
  }
  return line;
}

function flag(on: boolean): string {
  return on ? '+' : '-';
}

/** The lines lspci -v adds under a device. */
export function formatVerbose(e: LspciEntry): string[] {
  const lines = [
    `\tSubsystem: Device ${hex(e.subsystemVendor, 4)}:${hex(e.subsystemDevice, 4)}`,
    `\tControl: I/O${flag((e.command & PCI_COMMAND_IO) !== 0)} Mem${flag(
      (e.command & PCI_COMMAND_MEMORY) !== 0,
    )} BusMaster${flag((e.command & PCI_COMMAND_MASTER) !== 0)}`,
  ];
  if (e.interruptPin) {
    lines.push(`\tInterrupt: pin ${String.fromCharCode(0x40 + e.interruptPin)}`);
  }
  for (const b of e.bars) {
    const at = b.address ? hex(b.address, b.io ? 4 : 8) : '<unassigned>';
    lines.push(
      b.io
        ? `\tRegion ${b.index}: I/O ports at ${at} [size=${sizeText(b.size)}]`
        : `\tRegion ${b.index}: Memory at ${at} (${b.bits}-bit, ${b.prefetch ? '' : 'non-'}prefetchable) [size=${sizeText(b.size)}]`,
    );
  }
  lines.push('\tKernel driver in use: vfio_mdev', `\tmdev type: ${e.type} (parent ${e.parent})`);
  return lines;
}

/** A loaded sample parent: its device and how to unload it. */
interface LoadedSample {
  parent: Device;
  exit(): void;
}

/** The sample setup lspci and tty make when no VFIO mdev exists. */
export interface SampleSetup {
  /** The UUIDs created, in order. */
  readonly created: string[];
  /** Removes what was created and unloads what was loaded. */
  teardown(): void;
}

const SAMPLE_LOADERS: [string, () => LoadedSample][] = [
  ['mtty', () => mttyInit()],
  ['mdpy', () => mdpyInit()],
  ['mbochs', () => mbochsInit()],
];

/** The VFIO samples `loadVfioSamples` loaded, and how to unload them. */
export interface LoadedSamples {
  /** Unloads what was loaded, and the VFIO mediated bus when it was loaded with them. */
  unload(): void;
}

/**
 * Loads the VFIO samples named (default all: mtty, mdpy, mbochs) that are not loaded yet. A
 * sample loaded already (by this process) is used as it is, and left loaded by `unload`.
 */
export function loadVfioSamples(
  names: readonly string[] = SAMPLE_LOADERS.map(([name]) => name),
): LoadedSamples {
  const loaded: LoadedSample[] = [];
  const unload = () => {
    for (const s of loaded.reverse()) s.exit();
    // Unload the bus only when these samples loaded it and no parent is left on it.
    const parentsLeft = sysfs.exists('/sys/class/mdev_bus')
      ? sysfs.list('/sys/class/mdev_bus')
      : [];
    if (loaded.length && parentsLeft.length === 0) mdevVfioExit();
    loaded.length = 0;
  };
  try {
    for (const [name, load] of SAMPLE_LOADERS) {
      if (names.includes(name) && !sysfs.exists(`/sys/class/${name}`)) loaded.push(load());
    }
  } catch (err) {
    unload();
    throw err;
  }
  return { unload };
}

/** Every type the VFIO samples offer, as `--type` takes them. */
export const SAMPLE_TYPES: readonly string[] = [
  ...MTTY_TYPES.map((t) => `mtty-${t.group}`),
  ...MDPY_TYPES.map((t) => `mdpy-${t.group}`),
  ...MBOCHS_TYPES.map((t) => `mbochs-${t.group}`),
];

/** The UUID of the n-th mdev a sample setup creates. */
export function sampleUuid(n: number): string {
  return `83b8f4f2-509f-382f-3c1e-e6bfe0fa${hex(0x1001 + n, 4)}`;
}

/**
 * Loads the VFIO samples (those whose names prefix a wanted type, or all) and creates one mdev of
 * each wanted type, or of every type with instances available. Unknown types are EINVAL.
 */
export function setupVfioSamples(types: readonly string[] = []): SampleSetup {
  const created: string[] = [];
  const names = SAMPLE_LOADERS.map(([name]) => name).filter(
    (name) => !types.length || types.some((t) => t.startsWith(`${name}-`)),
  );
  const samples = loadVfioSamples(names);
  const teardown = () => {
    for (const uuid of [...created].reverse()) {
      const m = vfioMdevDevices().find((d) => d.uuid === uuid);
      if (m?.active) mdevDeviceRemove(m);
    }
    samples.unload();
  };
  try {
    const available = new Map<string, string>();
    for (const name of names) {
      const dir = `/sys/class/mdev_bus/${name}/mdev_supported_types`;
      if (!sysfs.exists(dir)) continue;
      for (const t of sysfs.list(dir)) available.set(t, `${dir}/${t}`);
    }
    const wanted = types.length ? [...types] : [...available.keys()];
    for (const t of wanted) {
      const dir = available.get(t);
      if (!dir) {
        throw new KernelError(
          'EINVAL',
          `no mdev type ${t} (known: ${[...available.keys()].join(', ')})`,
        );
      }
      if (!types.length && Number(sysfs.read(`${dir}/available_instances`)) < 1) continue;
      const taken = new Set(mdevReservedUuids());
      let n = created.length;
      while (taken.has(sampleUuid(n))) n++;
      const uuid = sampleUuid(n);
      sysfs.write(`${dir}/create`, uuid);
      created.push(uuid);
    }
  } catch (err) {
    teardown();
    throw err;
  }
  return { created, teardown };
}

/** Lists every VFIO mdev, in creation order. */
export function lspci(): LspciEntry[] {
  return vfioMdevDevices().map((m) => {
    const dev = vfioDeviceOpen(m);
    try {
      return lspciEntry(dev);
    } finally {
      dev.close();
    }
  });
}

/** `mdev lspci [-v] [--json] [--type TYPE]...`. */
export async function run(args: string[], io: CommandIo): Promise<number> {
  // A command line it cannot run throws (UsageError, parseArgs' errors): `main` reports it with
  // the usage, exit status 2.
  const { values } = parseArgs({
    args,
    options: {
      verbose: { type: 'boolean', short: 'v' },
      json: { type: 'boolean' },
      type: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(usage);
    return 0;
  }
  for (const t of values.type ?? []) {
    if (!SAMPLE_TYPES.includes(t))
      throw new UsageError(`no mdev type "${t}" (known: ${SAMPLE_TYPES.join(', ')})`);
  }
  const setup = vfioMdevDevices().length === 0 ? setupVfioSamples(values.type ?? []) : null;
  try {
    const entries = lspci();
    for (const e of entries) {
      if (values.json) {
        io.stdout.write(`${JSON.stringify(e)}\n`);
        continue;
      }
      io.stdout.write(`${formatEntry(e)}\n`);
      if (values.verbose) io.stdout.write(`${formatVerbose(e).join('\n')}\n\n`);
    }
    return 0;
  } finally {
    setup?.teardown();
  }
}
