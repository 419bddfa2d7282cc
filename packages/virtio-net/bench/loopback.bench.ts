// Throughput of the virtio-net driver against the same-thread loopback test device: 64-byte
// frames, sent in bursts with backpressure, counted and checked on receive. One JSON line per run.
import { HostRam, registerVirtioDevice, unregisterVirtioDevice } from '@mdev/virtio';
import { createTestVirtioDevice, LoopbackNetDevice } from '@mdev/virtio/testing';
import {
  NETDEV_TX_BUSY,
  registerVirtioNetDriver,
  setVirtioNetParams,
  unregisterVirtioNetDriver,
  virtnetFromVirtioDevice,
} from '../src/index';

const total = Number(process.argv[2] ?? 2_000_000);
const size = 64;

registerVirtioNetDriver();
setVirtioNetParams({ napiWeight: 256 });
const ram = new HostRam();
const dev = new LoopbackNetDevice({ ram, numMax: 1024, budget: 256 });
const vdev = createTestVirtioDevice(dev);
registerVirtioDevice(vdev);
const net = virtnetFromVirtioDevice(vdev)!;

const frame = new Uint8Array(size).fill(0xab);
let sent = 0;
let received = 0;
let corrupted = 0;
net.onReceive = (buf, off, len) => {
  if (len !== size || buf[off + 63] !== 0xab) corrupted++;
  received++;
};
const heap0 = process.memoryUsage().heapUsed;
const t0 = process.hrtime.bigint();
await new Promise<void>((done) => {
  const pump = () => {
    while (sent < total) {
      if (net.xmit(frame, true) === NETDEV_TX_BUSY) return;
      sent++;
    }
    net.flush();
  };
  net.onTxWake = pump;
  net.open();
  pump();
  const check = () => (received >= total ? done() : setImmediate(check));
  check();
});
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(
  JSON.stringify({
    name: 'virtio-net loopback (test device, same thread)',
    packets: received,
    bytes: received * size,
    seconds,
    Mpps: received / seconds / 1e6,
    'Gbit/s': (received * size * 8) / seconds / 1e9,
    lost: sent - received,
    corrupted,
    heapDelta: process.memoryUsage().heapUsed - heap0,
  }),
);
unregisterVirtioDevice(vdev);
unregisterVirtioNetDriver();
