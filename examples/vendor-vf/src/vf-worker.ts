/**
 * The VF's engine thread: its "hardware". It applies the host's posted register writes, moves
 * frames through the rings in host memory (which it reaches as a device behind an IOMMU would:
 * the mappings the host published), raises interrupts, and sleeps on the link's attention word
 * when there is nothing to do.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import {
  type AddressSpace,
  GuestMemory,
  type SharedMemoryDescriptor,
  type Translation,
} from '@mdev/virtio-ring';
import { RX_GRACE_MS, VfEngine } from './engine';
import { LINK_ATTENTION, LINK_STOP } from './layout';
import type { VfPlatformMessage, VfWorkerData } from './vf-protocol';

const data = workerData as VfWorkerData;
// The VF's fault reports (DEVICE_NEEDS_RESET and why) are the host's to print: they go to the
// host's thread, which emits them as its own warnings, instead of to this thread's stderr.
process.emitWarning = ((warning: string | Error) =>
  parentPort?.postMessage({ warning: String(warning) })) as typeof process.emitWarning;
const link = new Int32Array(data.shared.link);
const memory = GuestMemory.fromShared(data.memory);

function addRegions(desc: SharedMemoryDescriptor): void {
  for (const r of desc.regions) {
    if (!memory.regions.some((m) => m.base === r.base)) memory.addRegion(r.base, r.buffer);
  }
}

/** Host memory as the VF reaches it; a miss first picks up the mappings the host published. */
const iommu: AddressSpace = {
  translate(addr: number, len: number, out: Translation): boolean {
    if (memory.translate(addr, len, out)) return true;
    let grew = false;
    for (let m = receiveMessageOnPort(data.iommu); m; m = receiveMessageOnPort(data.iommu)) {
      addRegions(m.message as SharedMemoryDescriptor);
      grew = true;
    }
    return grew && memory.translate(addr, len, out);
  },
};

const engine = new VfEngine(data.shared, iommu, data.init);

function platform(): void {
  for (let m = receiveMessageOnPort(data.platform); m; m = receiveMessageOnPort(data.platform)) {
    const msg = m.message as VfPlatformMessage;
    if (msg.op === 'link') engine.setLink(msg.up);
  }
}

while (Atomics.load(link, LINK_STOP) === 0) {
  // Read the attention word before looking at anything: a write or kick after this point ends
  // the wait below at once.
  const seen = Atomics.load(link, LINK_ATTENTION);
  platform();
  engine.serviceMmio();
  const result = engine.run();
  engine.publish();
  engine.flushInterrupts();
  // Idle: sleep until the host writes or kicks. Starved (a frame waits for a receive buffer):
  // sleep until the driver's kick, or until the grace is over and the frame is dropped.
  if (result === 'idle') Atomics.wait(link, LINK_ATTENTION, seen, 1000);
  else if (result === 'starved') Atomics.wait(link, LINK_ATTENTION, seen, RX_GRACE_MS);
}
