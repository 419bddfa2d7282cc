import type { AddressSpace, Translation } from '@mdev/virtio-ring';

/**
 * One range of the IOMMU table in front of a VF: device addresses `[iova, iova + bytes.length)`
 * are `bytes`.
 */
export interface VfIommuEntry {
  readonly iova: number;
  readonly bytes: Uint8Array;
}

/**
 * The VF's view of memory through an IOMMU table the host programmed for a driver outside the
 * host (a vhost-user frontend's memory table, handed down as vDPA's set_map, drivers/vhost/vdpa.c):
 * a device address translates only inside an entry, and a translation ends where its entry
 * ends. An address outside every entry is a DMA fault, which the ring walk reports as a broken
 * ring. The table is immutable: a new one is a new `VfIommu`.
 */
export class VfIommu implements AddressSpace {
  /** The frontend writes the rings from another process or thread: indices go through Atomics. */
  readonly shared = true;
  private last = 0;

  /** `entries` sorted by IOVA, not overlapping (as `mdevVirtioSetMap` checked them). */
  constructor(readonly entries: readonly VfIommuEntry[]) {}

  translate(addr: number, len: number, out: Translation): boolean {
    if (!(len >= 0 && addr >= 0)) return false;
    const entries = this.entries;
    let e = entries[this.last];
    if (e === undefined || addr < e.iova || addr + len > e.iova + e.bytes.length) {
      const i = entries.findIndex((m) => addr >= m.iova && addr + len <= m.iova + m.bytes.length);
      if (i < 0) return false;
      this.last = i;
      e = entries[i]!;
    }
    out.u8 = e.bytes;
    out.offset = addr - e.iova;
    return true;
  }
}
