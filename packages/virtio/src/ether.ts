import { ETH_ALEN } from './virtio-net';

/**
 * Mirrors eth_random_addr() (include/linux/etherdevice.h): a random MAC from the platform's
 * cryptographic generator (the kernel's get_random_bytes), unicast (multicast bit 0 of the first
 * octet clear) and locally administered (bit 1 set), so it never collides with a vendor's
 * assigned address. Used by every device and driver here that needs an address of its own.
 */
export function randomMac(): Uint8Array {
  const mac = new Uint8Array(ETH_ALEN);
  crypto.getRandomValues(mac);
  mac[0] = (mac[0]! & 0xfe) | 0x02;
  return mac;
}
