/**
 * The ops of the README's vendor skeleton (`import { ops } from './my-vf-ops.js'`; the consumer
 * test writes this file as my-vf-ops.ts beside the skeleton), for the consumer scenario
 * "vendor": a virtio-net device with two queues that keeps the state the driver programs
 * (status, features, queue addresses) and has no datapath. Enough for the
 * virtio-mdev transport to register a virtio device and for virtio-net to bind to it and open
 * its net device. Compiled against the published declarations like the rest of the scenario.
 */
import type { MdevDevice } from '@mdev/mdev-core';
import type { MdevVirtioOps, VirtioMdevCallback } from '@mdev/mdev-virtio';

// uapi numbers (<linux/virtio_ids.h>, <linux/virtio_config.h>, <linux/virtio_net.h>).
const VIRTIO_ID_NET = 1;
const VIRTIO_NET_F_MAC = 5n;
const VIRTIO_F_VERSION_1 = 32n;
const FEATURES = (1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_NET_F_MAC);
const QUEUES = 2;

interface Queue {
  ready: boolean;
  num: number;
  desc: number;
  driver: number;
  device: number;
  lastAvail: number;
  cb: VirtioMdevCallback | null;
}

interface VfState {
  status: number;
  features: bigint;
  config: Uint8Array;
  queues: Queue[];
  kicks: number[];
}

const states = new WeakMap<MdevDevice, VfState>();

function freshQueues(): Queue[] {
  return Array.from({ length: QUEUES }, () => ({
    ready: false,
    num: 0,
    desc: 0,
    driver: 0,
    device: 0,
    lastAvail: 0,
    cb: null,
  }));
}

/** The state of an mdev (made at its first op, as a vendor's create would). */
export function vfState(mdev: MdevDevice): VfState {
  let s = states.get(mdev);
  if (!s) {
    // config: mac[6] (locally administered), status[2] (unused without VIRTIO_NET_F_STATUS).
    const config = Uint8Array.of(0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0, 0);
    s = { status: 0, features: 0n, config, queues: freshQueues(), kicks: [0, 0] };
    states.set(mdev, s);
  }
  return s;
}

function queue(mdev: MdevDevice, idx: number): Queue {
  const q = vfState(mdev).queues[idx];
  if (!q) throw new RangeError(`my_vf: no queue ${idx}`);
  return q;
}

export const ops: MdevVirtioOps = {
  setVqAddress(mdev, idx, desc, driver, device) {
    Object.assign(queue(mdev, idx), { desc, driver, device });
  },
  setVqNum(mdev, idx, num) {
    queue(mdev, idx).num = num;
  },
  kickVq(mdev, idx) {
    const s = vfState(mdev);
    s.kicks[idx] = (s.kicks[idx] ?? 0) + 1;
  },
  setVqCb(mdev, idx, cb) {
    queue(mdev, idx).cb = cb;
  },
  setVqReady(mdev, idx, ready) {
    queue(mdev, idx).ready = ready;
  },
  getVqReady(mdev, idx) {
    return queue(mdev, idx).ready;
  },
  setVqState(mdev, idx, state) {
    queue(mdev, idx).lastAvail = state;
  },
  getVqState(mdev, idx) {
    return queue(mdev, idx).lastAvail;
  },
  getVqAlign() {
    return 4096;
  },
  getFeatures() {
    return FEATURES;
  },
  setFeatures(mdev, features) {
    vfState(mdev).features = features & FEATURES;
  },
  setConfigCb() {},
  getVqNumMax() {
    return 256;
  },
  getDeviceId() {
    return VIRTIO_ID_NET;
  },
  getVendorId() {
    return 0x1af4;
  },
  getStatus(mdev) {
    return vfState(mdev).status;
  },
  setStatus(mdev, status) {
    const s = vfState(mdev);
    s.status = status;
    if (status === 0) {
      s.features = 0n;
      s.queues = freshQueues();
    }
  },
  getConfig(mdev, offset, buf) {
    const cfg = vfState(mdev).config;
    buf.fill(0);
    if (offset < cfg.length)
      buf.set(cfg.subarray(offset, Math.min(cfg.length, offset + buf.length)));
  },
  setConfig() {},
};
