import {
  UART_FCR,
  UART_FCR_CLEAR_RCVR,
  UART_FCR_ENABLE_FIFO,
  UART_FCR_TRIGGER_4,
  UART_FCR_TRIGGER_8,
  UART_FCR_TRIGGER_14,
  UART_FCR_TRIGGER_MASK,
  UART_FIFO_SIZE,
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
  UART_MSR_DCTS,
  UART_MSR_DDCD,
  UART_MSR_DDSR,
  UART_MSR_DSR,
  UART_MSR_RI,
  UART_MSR_TERI,
  UART_RX,
  UART_SCR,
  UART_TX,
} from './serial_reg';

/** The MCR bits a 16550A implements. */
const MCR_MASK = 0x1f;
/** The IER bits a 16550A implements. */
const IER_MASK = 0x0f;

/**
 * One 16550A UART as mtty emulates it, with the transmitter looped back to the receiver: every
 * byte written to THR is "sent" at once and arrives in the receive FIFO of the same port.
 *
 * Departures from the 2019 sample, which the sample's own comments intend: the divisor latch
 * keeps both bytes as written; the FCR trigger level is honoured (1/4/8/14); IIR reports the one
 * highest-priority source (line status > received data > THR empty > modem status) as a real
 * 16550A does, with bits 7:6 set only while the FIFOs are enabled; OE stays set until LSR is read;
 * an overrun without FIFOs replaces the unread character in RBR, with the FIFO full it loses the
 * new one; reading an empty receive buffer returns 0. The character-timeout interrupt is not emulated: a
 * driver below the trigger level polls LSR.DR.
 */
export class Uart16550 {
  private readonly fifo = new Uint8Array(UART_FIFO_SIZE);
  private head = 0;
  private count = 0;
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private dll = 0;
  private dlm = 0;
  private fifoEnabled = false;
  private triggerLevel = 1;
  private overrun = false;
  /** THR-empty interrupt armed: cleared by reading IIR when it is the source, or writing THR. */
  private threPending = false;
  private msrDelta = 0;
  private lines = 0;

  /** Bytes transmitted (and looped back), overruns seen: for diagnostics. */
  txBytes = 0;
  overruns = 0;

  constructor() {
    this.reset();
  }

  /** Power-on state: registers cleared, FIFOs off and empty, no interrupt pending. */
  reset(): void {
    this.head = 0;
    this.count = 0;
    this.ier = 0;
    this.lcr = 0;
    this.mcr = 0;
    this.scr = 0;
    this.dll = 0;
    this.dlm = 0;
    this.fifoEnabled = false;
    this.triggerLevel = 1;
    this.overrun = false;
    this.threPending = false;
    this.msrDelta = 0;
    this.lines = this.modemLines();
  }

  /** The baud-rate divisor (DLM:DLL). */
  get divisor(): number {
    return (this.dlm << 8) | this.dll;
  }

  /** Bytes waiting in the receive FIFO. */
  get rxCount(): number {
    return this.count;
  }

  /** The receive FIFO's interrupt trigger level. */
  get rxTriggerLevel(): number {
    return this.triggerLevel;
  }

  private get dlab(): boolean {
    return (this.lcr & UART_LCR_DLAB) !== 0;
  }

  private get capacity(): number {
    return this.fifoEnabled ? UART_FIFO_SIZE : 1;
  }

  /** The modem status lines: looped from MCR in loopback mode, else a connected peer. */
  private modemLines(): number {
    if (!(this.mcr & UART_MCR_LOOP)) return UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD;
    return (
      (this.mcr & UART_MCR_RTS ? UART_MSR_CTS : 0) |
      (this.mcr & UART_MCR_DTR ? UART_MSR_DSR : 0) |
      (this.mcr & UART_MCR_OUT1 ? UART_MSR_RI : 0) |
      (this.mcr & UART_MCR_OUT2 ? UART_MSR_DCD : 0)
    );
  }

  private updateLines(): void {
    const now = this.modemLines();
    const changed = now ^ this.lines;
    if (changed & UART_MSR_CTS) this.msrDelta |= UART_MSR_DCTS;
    if (changed & UART_MSR_DSR) this.msrDelta |= UART_MSR_DDSR;
    if (changed & UART_MSR_DCD) this.msrDelta |= UART_MSR_DDCD;
    // TERI is the trailing edge of RI only.
    if (this.lines & UART_MSR_RI && !(now & UART_MSR_RI)) this.msrDelta |= UART_MSR_TERI;
    this.lines = now;
  }

  /**
   * A byte arrives from the line (here: from our own transmitter). On an overrun OE is raised
   * until LSR is read; which character survives depends on the mode, as on the 16550A.
   */
  receive(byte: number): void {
    if (this.count >= this.capacity) {
      this.overrun = true;
      this.overruns++;
      // Without FIFOs the new character is transferred into RBR over the unread one. With the
      // FIFO full it stays in the shift register, where the next one overwrites it: lost.
      if (!this.fifoEnabled) this.fifo[this.head] = byte & 0xff;
      return;
    }
    this.fifo[(this.head + this.count) % UART_FIFO_SIZE] = byte & 0xff;
    this.count++;
  }

  private pop(): number {
    if (this.count === 0) return 0;
    const b = this.fifo[this.head]!;
    this.head = (this.head + 1) % UART_FIFO_SIZE;
    this.count--;
    return b;
  }

  private clearRx(): void {
    this.head = 0;
    this.count = 0;
  }

  /** The interrupt identification, highest priority first, without side effects. */
  interruptId(): number {
    if (this.ier & UART_IER_RLSI && this.overrun) return UART_IIR_RLSI;
    if (this.ier & UART_IER_RDI && this.count > 0 && this.count >= this.triggerLevel) {
      return UART_IIR_RDI;
    }
    if (this.ier & UART_IER_THRI && this.threPending) return UART_IIR_THRI;
    if (this.ier & UART_IER_MSI && this.msrDelta) return UART_IIR_MSI;
    return UART_IIR_NO_INT;
  }

  /** Whether the port asserts its interrupt. */
  get interruptPending(): boolean {
    return this.interruptId() !== UART_IIR_NO_INT;
  }

  /** A guest's read of register `reg` (0..7), with the side effects of the real part. */
  read(reg: number): number {
    switch (reg) {
      case UART_RX:
        return this.dlab ? this.dll : this.pop();
      case UART_IER:
        return this.dlab ? this.dlm : this.ier;
      case UART_IIR: {
        const id = this.interruptId();
        // Reading IIR while THR empty is the reported source acknowledges it.
        if (id === UART_IIR_THRI) this.threPending = false;
        return id | (this.fifoEnabled ? UART_IIR_FIFO_ENABLED : 0);
      }
      case UART_LCR:
        return this.lcr;
      case UART_MCR:
        return this.mcr;
      case UART_LSR: {
        let lsr = UART_LSR_THRE | UART_LSR_TEMT;
        if (this.count > 0) lsr |= UART_LSR_DR;
        if (this.overrun) lsr |= UART_LSR_OE;
        this.overrun = false;
        return lsr;
      }
      case UART_MSR: {
        const msr = this.lines | this.msrDelta;
        this.msrDelta = 0;
        return msr;
      }
      case UART_SCR:
        return this.scr;
      default:
        throw new RangeError(`uart: no register ${reg}`);
    }
  }

  /** A guest's write of `value` to register `reg` (0..7). */
  write(reg: number, value: number): void {
    const v = value & 0xff;
    switch (reg) {
      case UART_TX:
        if (this.dlab) {
          this.dll = v;
          return;
        }
        this.txBytes++;
        this.receive(v);
        // The loopback transmits at once, so THR is empty again right away.
        this.threPending = true;
        return;
      case UART_IER: {
        if (this.dlab) {
          this.dlm = v;
          return;
        }
        const was = this.ier;
        this.ier = v & IER_MASK;
        // Enabling the THR-empty interrupt while THR is empty raises it at once.
        if (!(was & UART_IER_THRI) && this.ier & UART_IER_THRI) this.threPending = true;
        return;
      }
      case UART_FCR: {
        const enable = (v & UART_FCR_ENABLE_FIFO) !== 0;
        if (enable !== this.fifoEnabled) this.clearRx();
        this.fifoEnabled = enable;
        if (!enable) {
          this.triggerLevel = 1;
          if (this.count > 1) this.clearRx();
          return;
        }
        if (v & UART_FCR_CLEAR_RCVR) this.clearRx();
        const trig = v & UART_FCR_TRIGGER_MASK;
        this.triggerLevel =
          trig === UART_FCR_TRIGGER_14
            ? 14
            : trig === UART_FCR_TRIGGER_8
              ? 8
              : trig === UART_FCR_TRIGGER_4
                ? 4
                : 1;
        return;
      }
      case UART_LCR:
        this.lcr = v;
        return;
      case UART_MCR:
        this.mcr = v & MCR_MASK;
        this.updateLines();
        return;
      case UART_LSR:
      case UART_MSR:
        // Factory-test registers: writes are ignored.
        return;
      case UART_SCR:
        this.scr = v;
        return;
      default:
        throw new RangeError(`uart: no register ${reg}`);
    }
  }
}
