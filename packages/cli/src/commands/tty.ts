import { parseArgs } from 'node:util';
import { KernelError } from '@mdev/driver-core';
import {
  Eventfd,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  type VfioDevice,
  vfioDeviceOpen,
  vfioMdevDevices,
} from '@mdev/mdev-vfio';
import {
  MTTY_DEVICE_ID,
  MTTY_TYPES,
  MTTY_VENDOR_ID,
  PCI_DEVICE_ID,
  PCI_VENDOR_ID,
  UART_DLL,
  UART_DLM,
  UART_FCR,
  UART_FCR_CLEAR_RCVR,
  UART_FCR_CLEAR_XMIT,
  UART_FCR_ENABLE_FIFO,
  UART_FCR_TRIGGER_1,
  UART_IER,
  UART_IER_RDI,
  UART_IER_RLSI,
  UART_IIR,
  UART_IIR_ID,
  UART_IIR_MSI,
  UART_IIR_NO_INT,
  UART_IIR_RDI,
  UART_IIR_RLSI,
  UART_LCR,
  UART_LCR_DLAB,
  UART_LCR_WLEN8,
  UART_LSR,
  UART_LSR_DR,
  UART_LSR_OE,
  UART_LSR_THRE,
  UART_MCR,
  UART_MCR_DTR,
  UART_MCR_OUT2,
  UART_MCR_RTS,
  UART_MSR,
  UART_RX,
  UART_TX,
} from '@mdev/samples-legacy';
import { HostRequestError, HostUnavailableError, hostRequest } from '../host/client';
import { socketIsLive } from '../host/server';
import type { CommandIo } from '../io';
import { integerOption, UsageError, uuidOption } from '../usage';
import { type SampleSetup, setupVfioSamples } from './lspci';
import { controlPath } from './mdevctl';

export const summary = 'a terminal session over an mtty serial port, echoed by its loopback';

export const usage = `usage: mdev tty [--type mtty-1|mtty-2] [-u|--uuid UUID] [--port N] [--baud RATE] [--msi]
                [--text TEXT] [--verbose] [--control PATH]

Opens an mtty serial port through VFIO and programs its 16550A as a guest driver does
(divisor latch, 8N1, FIFO, interrupts through a SET_IRQS eventfd). What you type is sent and
comes back through the card's loopback. Without a terminal on stdin it sends stdin (or --text)
and writes the echo to stdout, ending at EOF. Interactive sessions end with Ctrl-] or Ctrl-D.

  --type TYPE   the mtty type to create when no mtty mdev exists (default mtty-1)
  -u, --uuid UUID
                use this existing mtty mdev: the running host's when one listens on the
                control socket (the host sends the bytes, the echo comes back), else one of
                this process's
  --port N      the port of the card (0, or 1 on mtty-2; default 0)
  --baud RATE   the line speed, 115200 divided by a whole number (default 115200)
  --msi         take interrupts through MSI instead of INTx
  --verbose     print the session's counters on stderr at the end
  --control PATH
                the host's control socket (default: as 'mdev host' has it)
`;

/** The 16550's reference clock / 16: the divisor for a baud rate is BASE_BAUD / rate. */
export const BASE_BAUD = 115200;
/** Ctrl-] ends an interactive session, as in telnet; Ctrl-D too. */
const ESCAPE = 0x1d;
const EOT = 0x04;

/** What a session counted. */
export interface TtyStats {
  sent: number;
  received: number;
  interrupts: number;
  overruns: number;
  /** Bytes the transmit loop had to poll for because no interrupt came. */
  polled: number;
}

/**
 * A guest-style driver of one mtty port over its VFIO device: programs the UART, receives in an
 * interrupt handler run after each eventfd signal, and transmits one byte at a time, waiting for
 * the handler between bytes so the 16-byte receive FIFO never overruns.
 */
export class MttyPort {
  readonly dev: VfioDevice;
  readonly stats: TtyStats = { sent: 0, received: 0, interrupts: 0, overruns: 0, polled: 0 };
  private readonly base: number;
  private readonly irq = new Eventfd();
  private readonly irqIndex: number;
  private serviced: Promise<void> | null = null;
  private readonly onData: (bytes: Uint8Array) => void;
  private readonly off: () => void;

  constructor(
    dev: VfioDevice,
    options: { port: number; baud: number; msi: boolean; onData(bytes: Uint8Array): void },
  ) {
    this.dev = dev;
    this.onData = options.onData;
    this.irqIndex = options.msi ? VFIO_PCI_MSI_IRQ_INDEX : VFIO_PCI_INTX_IRQ_INDEX;
    const region = dev.getRegionInfo(VFIO_PCI_BAR0_REGION_INDEX + options.port);
    if (region.size < 8) {
      throw new KernelError('ENODEV', `tty: ${dev.uuid} has no port ${options.port}`);
    }
    this.base = region.offset;
    if (!Number.isInteger(options.baud) || options.baud <= 0 || BASE_BAUD % options.baud !== 0) {
      throw new KernelError('EINVAL', `tty: ${options.baud} baud is not ${BASE_BAUD}/n`);
    }
    // The handler runs as a bottom half: after the register access that raised the interrupt.
    this.off = this.irq.onSignal(() => {
      this.serviced ??= Promise.resolve().then(() => this.service());
    });
    this.dev.setIrqs({
      flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
      index: this.irqIndex,
      data: [this.irq],
    });
    this.program(BASE_BAUD / options.baud);
  }

  private r(reg: number): number {
    return this.dev.readU8(this.base + reg);
  }

  private w(reg: number, value: number): void {
    this.dev.writeU8(this.base + reg, value);
  }

  /** What serial8250 does at open: divisor, 8N1, FIFO with trigger 1, RX and line interrupts. */
  private program(divisor: number): void {
    this.w(UART_IER, 0);
    this.w(UART_LCR, UART_LCR_DLAB | UART_LCR_WLEN8);
    this.w(UART_DLL, divisor & 0xff);
    this.w(UART_DLM, (divisor >> 8) & 0xff);
    this.w(UART_LCR, UART_LCR_WLEN8);
    // Trigger level 1: the card emulates no character timeout, so every byte must interrupt.
    this.w(
      UART_FCR,
      UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT | UART_FCR_TRIGGER_1,
    );
    this.w(UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
    // Clear anything latched before interrupts go on.
    this.r(UART_LSR);
    this.r(UART_MSR);
    while (this.r(UART_LSR) & UART_LSR_DR) this.r(UART_RX);
    this.w(UART_IER, UART_IER_RDI | UART_IER_RLSI);
  }

  /** The interrupt handler: serves every source IIR reports, then unmasks INTx. */
  private service(): void {
    this.serviced = null;
    if (this.irq.count) this.stats.interrupts += this.irq.read();
    this.drain();
    if (this.irqIndex === VFIO_PCI_INTX_IRQ_INDEX) {
      this.dev.setIrqs({
        flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
        index: VFIO_PCI_INTX_IRQ_INDEX,
        count: 1,
      });
    }
  }

  private drain(): void {
    const got: number[] = [];
    // Bounded: each pass consumes a source; a FIFO holds at most 16 bytes.
    for (let pass = 0; pass < 64; pass++) {
      const iir = this.r(UART_IIR);
      if (iir & UART_IIR_NO_INT) break;
      const id = iir & UART_IIR_ID;
      if (id === UART_IIR_RLSI) {
        if (this.r(UART_LSR) & UART_LSR_OE) this.stats.overruns++;
      } else if (id === UART_IIR_RDI) {
        while (this.r(UART_LSR) & UART_LSR_DR) got.push(this.r(UART_RX));
      } else if (id === UART_IIR_MSI) {
        this.r(UART_MSR);
      }
    }
    if (got.length) {
      this.stats.received += got.length;
      this.onData(Uint8Array.from(got));
    }
  }

  /** Sends `bytes`, one at a time, letting the receive interrupt run after each. */
  async send(bytes: Uint8Array): Promise<void> {
    for (const b of bytes) {
      for (let spin = 0; !(this.r(UART_LSR) & UART_LSR_THRE); spin++) {
        if (spin > 1000) throw new KernelError('EIO', 'tty: transmitter stuck');
        await new Promise((resolve) => setImmediate(resolve));
      }
      this.w(UART_TX, b);
      this.stats.sent++;
      if (this.serviced) {
        await this.serviced;
      } else if (this.r(UART_LSR) & UART_LSR_DR) {
        // No interrupt came (masked or lost): fetch the echo by polling.
        this.stats.polled++;
        this.drain();
      }
    }
  }

  /** Quiesces the port: interrupts off in the UART and at VFIO, the eventfd closed. */
  close(): void {
    try {
      this.w(UART_IER, 0);
      this.w(UART_MCR, 0);
      this.dev.setIrqs({
        flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
        index: this.irqIndex,
        count: 0,
      });
    } finally {
      this.off();
      this.irq.close();
    }
  }
}

function isMtty(dev: VfioDevice): boolean {
  const cfg = dev.regionOffset(7);
  return (
    dev.readU16(cfg + PCI_VENDOR_ID) === MTTY_VENDOR_ID &&
    dev.readU16(cfg + PCI_DEVICE_ID) === MTTY_DEVICE_ID
  );
}

/** Opens the mtty mdev to use: the one named, else an existing one, else a new one. */
function openMtty(
  uuid: string | undefined,
  type: string,
): { dev: VfioDevice; setup: SampleSetup | null } {
  if (uuid) {
    const dev = vfioDeviceOpen(uuid);
    if (!isMtty(dev)) {
      dev.close();
      throw new KernelError('ENODEV', `tty: ${uuid} is not an mtty serial card`);
    }
    return { dev, setup: null };
  }
  for (const m of vfioMdevDevices()) {
    if (!m.type.name.startsWith('mtty-')) continue;
    return { dev: vfioDeviceOpen(m), setup: null };
  }
  const setup = setupVfioSamples([type]);
  try {
    return { dev: vfioDeviceOpen(setup.created[0]!), setup };
  } catch (err) {
    setup.teardown();
    throw err;
  }
}

/** What one exchange through an mtty port gave back: the echo and the session's counters. */
export interface TtyExchange {
  echo: Uint8Array;
  stats: TtyStats;
}

/**
 * Sends `data` through port `port` of the running mtty mdev `uuid` (of this process: the
 * host's) and returns what came back through the card's loopback. The port is programmed as at
 * open and quiesced again after: one exchange is one short session.
 */
export async function ttyExchange(
  uuid: string,
  options: { port: number; baud: number; msi: boolean },
  data: Uint8Array,
): Promise<TtyExchange> {
  const { dev } = openMtty(uuid, 'mtty-1');
  let tty: MttyPort | null = null;
  const got: Uint8Array[] = [];
  try {
    if (dev.getRegionInfo(VFIO_PCI_BAR0_REGION_INDEX + options.port).size < 8) {
      throw new KernelError(
        'EINVAL',
        `tty: ${dev.mdev.type.name} card ${uuid} has port 0 only, not port ${options.port}`,
      );
    }
    tty = new MttyPort(dev, { ...options, onData: (bytes) => got.push(bytes) });
    await tty.send(data);
    return { echo: Buffer.concat(got), stats: { ...tty.stats } };
  } finally {
    tty?.close();
    dev.close();
  }
}

type RawStdin = NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?(raw: boolean): unknown };

async function* chunks(stream: NodeJS.ReadableStream): AsyncGenerator<Uint8Array> {
  for await (const c of stream) {
    yield typeof c === 'string' ? Buffer.from(c) : (c as Uint8Array);
  }
}

/** The most bytes one request to a host carries (base64 of it fits a request line). */
const HOST_CHUNK = 16 * 1024;

/** Where a session's bytes go: a port opened here, or one of a running host's. */
interface TtyLink {
  describe: string;
  send(bytes: Uint8Array): Promise<void>;
  stats(): TtyStats;
  close(): void;
}

/** A port of a running host's mtty mdev: each chunk is sent there, its echo comes back. */
function hostLink(
  control: string,
  uuid: string,
  options: { port: number; baud: number; msi: boolean },
  onData: (bytes: Uint8Array) => void,
): TtyLink {
  const total: TtyStats = { sent: 0, received: 0, interrupts: 0, overruns: 0, polled: 0 };
  return {
    describe: `${uuid} on the host at ${control}`,
    async send(bytes) {
      for (let at = 0; at < bytes.length; at += HOST_CHUNK) {
        const data = Buffer.from(bytes.subarray(at, at + HOST_CHUNK)).toString('base64');
        const r = (await hostRequest(control, 'tty', { uuid, ...options, data })) as {
          data: string;
          stats: TtyStats;
        };
        const echo = Buffer.from(r.data, 'base64');
        if (echo.length) onData(echo);
        for (const k of Object.keys(total) as (keyof TtyStats)[]) total[k] += r.stats[k];
      }
    },
    stats: () => total,
    close() {},
  };
}

/** `mdev tty`. */
export async function run(args: string[], io: CommandIo): Promise<number> {
  // A command line it cannot run throws (UsageError, parseArgs' errors): `main` reports it with
  // the usage, exit status 2.
  const { values } = parseArgs({
    args,
    options: {
      type: { type: 'string' },
      uuid: { type: 'string', short: 'u' },
      port: { type: 'string' },
      baud: { type: 'string' },
      msi: { type: 'boolean' },
      text: { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
      control: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(usage);
    return 0;
  }
  const type = values.type ?? 'mtty-1';
  if (!MTTY_TYPES.some((t) => `mtty-${t.group}` === type))
    throw new UsageError(`--type must be mtty-1 or mtty-2, not "${type}"`);
  const uuid = uuidOption(values.uuid)?.toLowerCase();
  // mtty cards have one or two ports; which of them a given card has is known once it is open.
  const port = integerOption('port', values.port, 0, 0, 1);
  const baud = integerOption('baud', values.baud, BASE_BAUD, 1, BASE_BAUD);
  if (BASE_BAUD % baud !== 0) {
    throw new UsageError(
      `--baud must be ${BASE_BAUD} divided by a whole number (${BASE_BAUD}, 57600, 38400, ..., 9600, ...), not ${baud}`,
    );
  }
  const msi = values.msi ?? false;
  const control = controlPath(io, values.control);

  const stdin = io.stdin as RawStdin | undefined;
  const interactive = values.text === undefined && stdin?.isTTY === true;
  const onData = (bytes: Uint8Array) => {
    // A terminal wants CR LF for the Enter key's CR.
    const out = interactive ? Buffer.from(bytes).toString('latin1').replace(/\r/g, '\r\n') : bytes;
    io.stdout.write(typeof out === 'string' ? Buffer.from(out, 'latin1') : out);
  };
  let link: TtyLink;
  // A device named by UUID is the running host's when a host listens; else it is one of this
  // process's, as without a host.
  if (uuid !== undefined && (await socketIsLive(control))) {
    link = hostLink(control, uuid, { port, baud, msi }, onData);
  } else {
    link = openLocal(uuid, type, { port, baud, msi }, onData);
  }
  try {
    if (values.text !== undefined) {
      await link.send(Buffer.from(values.text));
    } else if (interactive && stdin) {
      io.stderr.write(
        `Connected to ${link.describe} port ${port} (${baud} 8N1, ${msi ? 'MSI' : 'INTx'}). Escape: Ctrl-]\r\n`,
      );
      stdin.setRawMode?.(true);
      try {
        outer: for await (const c of chunks(stdin)) {
          for (let i = 0; i < c.length; i++) {
            if (c[i] === ESCAPE || c[i] === EOT) {
              await link.send(c.subarray(0, i));
              break outer;
            }
          }
          await link.send(c);
        }
      } finally {
        stdin.setRawMode?.(false);
        stdin.pause?.();
      }
      io.stderr.write('\r\nDisconnected.\r\n');
    } else if (stdin) {
      for await (const c of chunks(stdin)) await link.send(c);
    }
    if (values.verbose) {
      const s = link.stats();
      io.stderr.write(
        `tty: sent ${s.sent} received ${s.received} interrupts ${s.interrupts} overruns ${s.overruns} polled ${s.polled}\n`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof HostRequestError || err instanceof HostUnavailableError) {
      io.stderr.write(`mdev tty: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    link.close();
  }
}

/** A port of an mtty mdev of this process (the one named, an existing one, or a new one). */
function openLocal(
  uuid: string | undefined,
  type: string,
  options: { port: number; baud: number; msi: boolean },
  onData: (bytes: Uint8Array) => void,
): TtyLink {
  const { dev, setup } = openMtty(uuid, type);
  let tty: MttyPort;
  try {
    if (dev.getRegionInfo(VFIO_PCI_BAR0_REGION_INDEX + options.port).size < 8) {
      throw new UsageError(
        `--port ${options.port}: ${dev.mdev.type.name} card ${dev.uuid} has port 0 only`,
      );
    }
    tty = new MttyPort(dev, { ...options, onData });
  } catch (err) {
    dev.close();
    setup?.teardown();
    throw err;
  }
  return {
    describe: dev.uuid,
    send: (bytes) => tty.send(bytes),
    stats: () => tty.stats,
    close() {
      try {
        tty.close();
      } finally {
        dev.close();
        setup?.teardown();
      }
    },
  };
}
