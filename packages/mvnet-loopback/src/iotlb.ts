import type { MdevVirtioMapEntry } from '@mdev/mdev-virtio';
import type { AddressSpace, Translation } from '@mdev/virtio-ring';

/**
 * The address space an mvnet instance reads its rings and buffers through. Without a map it is
 * the host memory itself (the sample's "HVA as IOVA"); with one (set_map) a device address is an
 * IOVA of the map, as vdpa_sim translates through its own vhost_iotlb
 * (drivers/vdpa/vdpa_sim/vdpa_sim.c), and an address outside it does not translate, which the
 * ring walk reports as a broken ring.
 *
 * The walk asks for a range without saying whether it reads or writes, so the access bits of an
 * entry are kept but a range is served whatever they are.
 */
export class IotlbAddressSpace implements AddressSpace {
  private entries: readonly MdevVirtioMapEntry[] | null = null;
  /**
   * Each entry's bytes as a view of their own: a translation then ends where its entry ends
   * (the ring walk splits a buffer running over two entries at the end of the first's view).
   */
  private views: Uint8Array[] = [];
  private last = -1;

  /** `memory`: the host memory, what a device address is without a map. */
  constructor(private readonly memory: AddressSpace) {}

  /**
   * With a map, another party (a vhost-user frontend, a guest) owns the memory and may write the
   * ring indices at any time: they are then read with `Atomics`.
   */
  get shared(): boolean {
    return this.entries !== null || this.memory.shared !== false;
  }

  /** The map in use, sorted by IOVA, or null for the host memory itself. */
  get map(): readonly MdevVirtioMapEntry[] | null {
    return this.entries;
  }

  /** Replaces the map (entries checked by the bus: sorted, non-empty, not overlapping). */
  setMap(map: readonly MdevVirtioMapEntry[] | null): void {
    this.entries = map;
    this.views = (map ?? []).map((e) => e.region.u8.subarray(e.offset, e.offset + e.size));
    this.last = -1;
  }

  translate(addr: number, len: number, out: Translation): boolean {
    const entries = this.entries;
    if (entries === null) return this.memory.translate(addr, len, out);
    if (!(len >= 0 && addr >= 0)) return false;
    let i = this.last;
    let e = entries[i];
    if (e === undefined || addr < e.iova || addr + len > e.iova + e.size) {
      i = entries.findIndex((m) => addr >= m.iova && addr + len <= m.iova + m.size);
      if (i < 0) return false;
      e = entries[i]!;
      this.last = i;
    }
    out.u8 = this.views[i]!;
    out.offset = addr - e.iova;
    return true;
  }
}
