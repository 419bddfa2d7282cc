// Run as a program by the keepalive tests: `await-echo.ts [DEVICE]` sets the stack up over the
// pktgen device DEVICE (default mvnet_loopback; others are registered with `node --import`) with
// the datapath in a worker, and sends FRAMES frames, many times what the rings hold, driven only
// by the device's interrupts: each received frame and each TX wake send more. Nothing else keeps
// the event loop alive, so the program only gets to print its line if the pending interrupts
// do. After the teardown nothing may hold the process: it has to exit by itself.
//
// At most WINDOW frames are in flight, half the receive ring, so the device always has a
// receive buffer and never drops a frame (a device drops a frame it has held for a buffer too
// long, which a loaded machine can make happen if the ring is kept full).
import { NETDEV_TX_BUSY } from '@mdev/virtio-net';
import { setupStack } from '../pktgen/run';

const FRAMES = 20_000;
const QUEUE_SIZE = 64;
const WINDOW = QUEUE_SIZE / 2;
/** A run that stalls this long reports where it stands and fails (the timer holds nothing). */
const STALL_MS = 20_000;

const stack = setupStack(undefined, {
  device: process.argv[2] ?? 'mvnet_loopback',
  offload: true,
  queueSize: QUEUE_SIZE,
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
const stall = setTimeout(() => {
  const dropped = stack.parent.txDropped(stack.mdev);
  console.error(`stalled: sent ${sent}, received ${received}, dropped by the device ${dropped}`);
  process.exit(1);
}, STALL_MS).unref();
await new Promise<void>((resolve) => {
  const send = () => {
    const end = Math.min(FRAMES, received + WINDOW);
    if (sent >= end) return;
    while (sent < end) {
      frame[14] = sent & 0xff;
      if (netdev.xmit(frame, sent < end - 1) === NETDEV_TX_BUSY) break;
      sent++;
    }
    netdev.flush();
  };
  netdev.onReceive = (buf, offset, length) => {
    received++;
    if (length === frame.length && buf[offset + 14] === ((received - 1) & 0xff)) intact++;
    if (received === FRAMES) resolve();
    else send();
  };
  netdev.onTxWake = send;
  send();
});
clearTimeout(stall);
stack.teardown();
console.log(JSON.stringify({ sent, received, intact }));
