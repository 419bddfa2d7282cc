/** Mirrors NETDEV_TX_OK: the frame was taken (netdev_tx_t). */
export const NETDEV_TX_OK = 0;
/** Mirrors NETDEV_TX_BUSY: the queue is stopped; keep the frame and retry after the wake callback. */
export const NETDEV_TX_BUSY = 0x10;
/** What `xmit` returns (netdev_tx_t). */
export type NetdevTx = typeof NETDEV_TX_OK | typeof NETDEV_TX_BUSY;

/** Length of an Ethernet header (ETH_HLEN, if_ether.h). */
export const ETH_HLEN = 14;
/** Length of an 802.1Q tag (VLAN_HLEN, if_vlan.h). */
export const VLAN_HLEN = 4;
/** The smallest MTU (ETH_MIN_MTU, if_ether.h). */
export const ETH_MIN_MTU = 68;
/** The default Ethernet MTU (ETH_DATA_LEN, if_ether.h). */
export const ETH_DATA_LEN = 1500;

/**
 * The receive handler: the frame is `buf[offset, offset + length)`, valid only during the call
 * (the buffer goes back to the device afterwards; copy what you keep).
 */
export type RxHandler = (buf: Uint8Array, offset: number, length: number) => void;

/**
 * Builds a frame in place for `xmitWith`: writes its bytes at `buf[offset, offset + len)`, in
 * the transmit buffer the device will read (so the frame is not copied again).
 */
export type TxBuilder = (buf: Uint8Array, offset: number) => void;

/** Mirrors struct rtnl_link_stats64 (the counters a net device keeps). */
export interface NetDeviceStats {
  rxPackets: number;
  rxBytes: number;
  /** Received frames nobody took (no handler) or that could not be assembled. */
  rxDropped: number;
  /** Malformed receive buffers from the device (rx_length_errors and friends). */
  rxErrors: number;
  txPackets: number;
  txBytes: number;
  /** Frames the device was given up on (a broken queue). */
  txDropped: number;
  txErrors: number;
}

/**
 * A network interface (the part of struct net_device and its ndo ops that users program
 * against). `xmit` never drops silently: it returns NETDEV_TX_BUSY while the queue is stopped
 * (ring full, link down, interface down) and `onTxWake` runs when it may be called again.
 */
export interface NetDevice {
  /** eth0, eth1, ... */
  readonly name: string;
  readonly ifindex: number;
  /** The MAC address (a copy). */
  readonly mac: Uint8Array;
  readonly mtu: number;
  /** The largest frame `xmit` takes (MTU + Ethernet header + VLAN tag). */
  readonly maxFrameLen: number;
  /** Link state (netif_carrier_ok). */
  readonly carrier: boolean;
  /** Whether the interface is open (IFF_UP). */
  readonly isUp: boolean;
  /** Whether the transmit queue is stopped (netif_queue_stopped). */
  readonly txStopped: boolean;
  readonly stats: Readonly<NetDeviceStats>;
  /** Mirrors ndo_open. */
  open(): void;
  /** Mirrors ndo_stop. */
  stop(): void;
  /**
   * Mirrors ndo_start_xmit: copies the frame to the device. With `more` the doorbell is deferred
   * to the last frame of the burst (xmit_more), or to `flush()`.
   */
  xmit(frame: Uint8Array, more?: boolean): NetdevTx;
  /**
   * `xmit` without the copy, the way a driver maps an skb's data where it lies: `build` writes
   * the `len`-byte frame straight into a transmit buffer, then the frame is queued. Returns
   * NETDEV_TX_BUSY (and `build` is not called) while the queue is stopped. If `build` throws,
   * nothing is queued and the error propagates.
   */
  xmitWith(len: number, build: TxBuilder, more?: boolean): NetdevTx;
  /** Rings the transmit doorbell for frames queued with `more`. */
  flush(): void;
  /** Busy polling: runs the receive/reclaim poll now, up to `budget` frames; returns frames received. */
  poll(budget: number): number;
  onReceive: RxHandler | null;
  onTxWake: (() => void) | null;
  onLinkChange: ((up: boolean) => void) | null;
}

/** A netdevice notifier event (NETDEV_REGISTER / NETDEV_UNREGISTER). */
export type NetdevEvent = 'register' | 'unregister';
export type NetdevListener = (event: NetdevEvent, dev: NetDevice) => void;

const devices: NetDevice[] = [];
const listeners = new Set<NetdevListener>();

/** Mirrors dev_alloc_name("eth%d"): the lowest free ethN. */
export function netdevAllocName(prefix = 'eth'): string {
  for (let i = 0; ; i++) {
    const name = `${prefix}${i}`;
    if (!devices.some((d) => d.name === name)) return name;
  }
}

/** Mirrors register_netdev(): adds the device to the list and tells the listeners. */
export function registerNetdev(dev: NetDevice): void {
  if (devices.some((d) => d.name === dev.name)) {
    throw new TypeError(`register_netdev: ${dev.name} exists`);
  }
  devices.push(dev);
  for (const l of listeners) l('register', dev);
}

/** Mirrors unregister_netdev(). */
export function unregisterNetdev(dev: NetDevice): void {
  const i = devices.indexOf(dev);
  if (i < 0) return;
  devices.splice(i, 1);
  for (const l of listeners) l('unregister', dev);
}

/** The registered net devices (the kernel's netdev list), in registration order. */
export function netdevList(): NetDevice[] {
  return [...devices];
}

/** Mirrors dev_get_by_name(). */
export function netdevGetByName(name: string): NetDevice | undefined {
  return devices.find((d) => d.name === name);
}

/** Mirrors register_netdevice_notifier(); returns the unsubscribe function. */
export function subscribeNetdev(listener: NetdevListener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
