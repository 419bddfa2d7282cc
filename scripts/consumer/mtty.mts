/**
 * Consumer scenario "mtty": the VFIO side of the stack with no virtio package installed.
 * Loads the mtty sample, creates a two-port device through sysfs as the kernel documentation
 * does, opens it through VFIO, and checks the UART echo: bytes written to the transmitter of a
 * port come back on its receiver, with a received-data interrupt on the INTx eventfd.
 * Compiled by the consumer test with module "nodenext", then run with node.
 */
import { KernelError, sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import {
  Eventfd,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_INTX_IRQ_INDEX,
  vfioDeviceOpen,
  vfioPciIndexToOffset,
} from '@mdev/mdev-vfio';
import {
  mttyInit,
  UART_FCR,
  UART_FCR_ENABLE_FIFO,
  UART_IER,
  UART_IER_RDI,
  UART_IIR,
  UART_IIR_ID,
  UART_IIR_RDI,
  UART_LSR,
  UART_LSR_DR,
  UART_RX,
  UART_TX,
} from '@mdev/samples-legacy';

function check(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Error(`mtty: ${what}`);
}

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const mtty = mttyInit();
const types = `${mtty.path}/mdev_supported_types`;
check(sysfs.list(types).includes('mtty-2'), `no mtty-2 type in ${types}`);
sysfs.write(`${types}/mtty-2/create`, `${UUID}\n`);
check(
  mdevDevices().some((m) => m.uuid === UUID),
  'the mdev was not created',
);

// The same UUID twice is EEXIST, as the kernel's create store returns.
try {
  sysfs.write(`${types}/mtty-2/create`, `${UUID}\n`);
  check(false, 'a second create with the same UUID succeeded');
} catch (err) {
  check(KernelError.is(err, 'EEXIST'), `second create: ${String(err)}`);
}

const dev = vfioDeviceOpen(UUID);
const irq = new Eventfd();
dev.setIrqs({
  flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
  index: VFIO_PCI_INTX_IRQ_INDEX,
  data: [irq],
});

const message = new TextEncoder().encode('hello, mtty');
for (const port of [0, 1]) {
  const base = vfioPciIndexToOffset(port);
  dev.writeU8(base + UART_FCR, UART_FCR_ENABLE_FIFO);
  dev.writeU8(base + UART_IER, UART_IER_RDI);
  const before = irq.total;
  for (const byte of message) dev.writeU8(base + UART_TX, byte);
  check(irq.total > before, `port ${port}: no received-data interrupt`);
  check(
    (dev.readU8(base + UART_IIR) & UART_IIR_ID) === UART_IIR_RDI,
    `port ${port}: IIR does not report received data`,
  );
  const echoed: number[] = [];
  while (dev.readU8(base + UART_LSR) & UART_LSR_DR) echoed.push(dev.readU8(base + UART_RX));
  const text = new TextDecoder().decode(new Uint8Array(echoed));
  check(text === 'hello, mtty', `port ${port}: echoed ${JSON.stringify(text)}`);
  dev.writeU8(base + UART_IER, 0);
  // INTx is automasked: unmask it for the next port.
  dev.setIrqs({
    flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
    index: VFIO_PCI_INTX_IRQ_INDEX,
    start: 0,
    count: 1,
  });
}

dev.close();
irq.close();
sysfs.write(`/sys/bus/mdev/devices/${UUID}/remove`, '1\n');
check(!mdevDevices().some((m) => m.uuid === UUID), 'the mdev was not removed');
mtty.exit();
console.log(
  JSON.stringify({ scenario: 'mtty', ports: 2, bytesEchoed: 2 * message.length, irqs: irq.total }),
);
