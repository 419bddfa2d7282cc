// The 8250/16550 register file as include/uapi/linux/serial_reg.h names it. Register numbers are
// byte offsets within the port's I/O BAR.

/** Receive buffer (read) / transmit holding (write); divisor latch low byte when DLAB is set. */
export const UART_RX = 0;
export const UART_TX = 0;
export const UART_DLL = 0;
/** Interrupt enable; divisor latch high byte when DLAB is set. */
export const UART_IER = 1;
export const UART_DLM = 1;
/** Interrupt identification (read) / FIFO control (write). */
export const UART_IIR = 2;
export const UART_FCR = 2;
export const UART_LCR = 3;
export const UART_MCR = 4;
export const UART_LSR = 5;
export const UART_MSR = 6;
export const UART_SCR = 7;
/** The number of registers (and the I/O BAR size). */
export const UART_NR_REGS = 8;

export const UART_IER_RDI = 0x01;
export const UART_IER_THRI = 0x02;
export const UART_IER_RLSI = 0x04;
export const UART_IER_MSI = 0x08;

export const UART_IIR_NO_INT = 0x01;
export const UART_IIR_ID = 0x0e;
export const UART_IIR_MSI = 0x00;
export const UART_IIR_THRI = 0x02;
export const UART_IIR_RDI = 0x04;
export const UART_IIR_RLSI = 0x06;
/** Bits 7:6 of IIR read 11 while the FIFOs are enabled (16550A). */
export const UART_IIR_FIFO_ENABLED = 0xc0;

export const UART_FCR_ENABLE_FIFO = 0x01;
export const UART_FCR_CLEAR_RCVR = 0x02;
export const UART_FCR_CLEAR_XMIT = 0x04;
export const UART_FCR_DMA_SELECT = 0x08;
export const UART_FCR_TRIGGER_MASK = 0xc0;
export const UART_FCR_TRIGGER_1 = 0x00;
export const UART_FCR_TRIGGER_4 = 0x40;
export const UART_FCR_TRIGGER_8 = 0x80;
export const UART_FCR_TRIGGER_14 = 0xc0;

export const UART_LCR_DLAB = 0x80;
export const UART_LCR_SBC = 0x40;
export const UART_LCR_SPAR = 0x20;
export const UART_LCR_EPAR = 0x10;
export const UART_LCR_PARITY = 0x08;
export const UART_LCR_STOP = 0x04;
export const UART_LCR_WLEN5 = 0x00;
export const UART_LCR_WLEN6 = 0x01;
export const UART_LCR_WLEN7 = 0x02;
export const UART_LCR_WLEN8 = 0x03;

export const UART_MCR_DTR = 0x01;
export const UART_MCR_RTS = 0x02;
export const UART_MCR_OUT1 = 0x04;
export const UART_MCR_OUT2 = 0x08;
export const UART_MCR_LOOP = 0x10;

export const UART_LSR_DR = 0x01;
export const UART_LSR_OE = 0x02;
export const UART_LSR_PE = 0x04;
export const UART_LSR_FE = 0x08;
export const UART_LSR_BI = 0x10;
export const UART_LSR_THRE = 0x20;
export const UART_LSR_TEMT = 0x40;
export const UART_LSR_FIFOE = 0x80;

export const UART_MSR_DCTS = 0x01;
export const UART_MSR_DDSR = 0x02;
export const UART_MSR_TERI = 0x04;
export const UART_MSR_DDCD = 0x08;
export const UART_MSR_CTS = 0x10;
export const UART_MSR_DSR = 0x20;
export const UART_MSR_RI = 0x40;
export const UART_MSR_DCD = 0x80;
export const UART_MSR_ANY_DELTA = 0x0f;

/** The 16550A's receive FIFO depth. */
export const UART_FIFO_SIZE = 16;
