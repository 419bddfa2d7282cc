// Run as a program by the keepalive tests: `await-echo.ts [DEVICE]` sets the stack up over the
// pktgen device DEVICE (default mvnet_loopback; others are registered with `node --import`) with
// the datapath in a worker, and sends FRAMES frames, more than the rings hold, driven only by the
// device's interrupts: the TX wake sends more, the receive handler counts. Nothing else keeps
// the event loop alive, so the program only gets to print its line if the pending interrupts
// do. After the teardown nothing may hold the process: it has to exit by itself.
import { NETDEV_TX_BUSY } from '@mdev/virtio-net';
import { setupStack } from '../pktgen/run';

const FRAMES = 20_000;
const stack = setupStack(undefined, {
  device: process.argv[2] ?? 'mvnet_loopback',
  offload: true,
  queueSize: 64,
});
const { netdev } = stack;
const frame = new Uint8Array(64);
frame.set(netdev.mac, 0);
frame.set(netdev.mac, 6);
frame[12] = 0x88;
frame[13] = 0xb5; // local experimental ethertype
let sent = 0;
let received = 0;
let intact = 0;
await new Promise<void>((resolve) => {
  netdev.onReceive = (buf, offset, length) => {
    received++;
    if (length === frame.length && buf[offset + 14] === ((received - 1) & 0xff)) intact++;
    if (received === FRAMES) resolve();
  };
  const send = () => {
    while (sent < FRAMES) {
      frame[14] = sent & 0xff;
      if (netdev.xmit(frame, sent < FRAMES - 1) === NETDEV_TX_BUSY) break;
      sent++;
    }
    netdev.flush();
  };
  netdev.onTxWake = send;
  send();
});
stack.teardown();
console.log(JSON.stringify({ sent, received, intact }));
