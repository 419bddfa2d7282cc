import { KernelError } from '@mdev/driver-core';
import {
  VFIO_DEVICE_INFO_ARGSZ,
  VFIO_DEVICE_INFO_CAP_OFFSET,
  VFIO_DEVICE_INFO_FLAGS,
  VFIO_DEVICE_INFO_MINSZ,
  VFIO_DEVICE_INFO_NUM_IRQS,
  VFIO_DEVICE_INFO_NUM_REGIONS,
  VFIO_DEVICE_INFO_SIZE,
  VFIO_GFX_PLANE_INFO_ARGSZ,
  VFIO_GFX_PLANE_INFO_DMABUF_ID,
  VFIO_GFX_PLANE_INFO_DRM_FORMAT,
  VFIO_GFX_PLANE_INFO_DRM_FORMAT_MOD,
  VFIO_GFX_PLANE_INFO_DRM_PLANE_TYPE,
  VFIO_GFX_PLANE_INFO_FLAGS,
  VFIO_GFX_PLANE_INFO_HEIGHT,
  VFIO_GFX_PLANE_INFO_MINSZ,
  VFIO_GFX_PLANE_INFO_SIZE,
  VFIO_GFX_PLANE_INFO_SIZE_FIELD,
  VFIO_GFX_PLANE_INFO_STRIDE,
  VFIO_GFX_PLANE_INFO_WIDTH,
  VFIO_GFX_PLANE_INFO_X_HOT,
  VFIO_GFX_PLANE_INFO_X_POS,
  VFIO_GFX_PLANE_INFO_Y_HOT,
  VFIO_GFX_PLANE_INFO_Y_POS,
  VFIO_INFO_CAP_HEADER_ID,
  VFIO_INFO_CAP_HEADER_NEXT,
  VFIO_INFO_CAP_HEADER_SIZE,
  VFIO_INFO_CAP_HEADER_VERSION,
  VFIO_IRQ_INFO_ARGSZ,
  VFIO_IRQ_INFO_COUNT,
  VFIO_IRQ_INFO_FLAGS,
  VFIO_IRQ_INFO_INDEX,
  VFIO_IRQ_INFO_SIZE,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ARGSZ,
  VFIO_IRQ_SET_COUNT,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_IRQ_SET_FLAGS,
  VFIO_IRQ_SET_INDEX,
  VFIO_IRQ_SET_SIZE,
  VFIO_IRQ_SET_START,
  VFIO_REGION_GFX_EDID_EDID_MAX_SIZE,
  VFIO_REGION_GFX_EDID_EDID_OFFSET,
  VFIO_REGION_GFX_EDID_EDID_SIZE,
  VFIO_REGION_GFX_EDID_LINK_STATE,
  VFIO_REGION_GFX_EDID_MAX_XRES,
  VFIO_REGION_GFX_EDID_MAX_YRES,
  VFIO_REGION_GFX_EDID_SIZE,
  VFIO_REGION_INFO_ARGSZ,
  VFIO_REGION_INFO_CAP_OFFSET,
  VFIO_REGION_INFO_CAP_SPARSE_MMAP,
  VFIO_REGION_INFO_CAP_SPARSE_MMAP_AREAS,
  VFIO_REGION_INFO_CAP_SPARSE_MMAP_NR_AREAS,
  VFIO_REGION_INFO_CAP_TYPE,
  VFIO_REGION_INFO_CAP_TYPE_SIZE,
  VFIO_REGION_INFO_CAP_TYPE_SUBTYPE,
  VFIO_REGION_INFO_CAP_TYPE_TYPE,
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAGS,
  VFIO_REGION_INFO_INDEX,
  VFIO_REGION_INFO_OFFSET_FIELD,
  VFIO_REGION_INFO_SIZE,
  VFIO_REGION_INFO_SIZE_FIELD,
  VFIO_REGION_SPARSE_MMAP_AREA_SIZE,
} from './uapi';

/** The C type of a struct field. */
export type FieldType = 'u16' | 'u32' | 'u64';
/** Each field of a struct: its byte offset and C type. */
export type Fields<T> = { readonly [K in keyof T]: readonly [offset: number, type: FieldType] };

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function readField(dv: DataView, offset: number, type: FieldType): number {
  if (type === 'u16') return dv.getUint16(offset, true);
  if (type === 'u32') return dv.getUint32(offset, true);
  const v = dv.getBigUint64(offset, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new KernelError('EINVAL', `vfio: 64-bit field value ${v} exceeds 2^53-1`);
  }
  return Number(v);
}

function writeField(dv: DataView, offset: number, type: FieldType, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`vfio: field value ${value} is not an unsigned integer`);
  }
  if (type === 'u16') dv.setUint16(offset, value, true);
  else if (type === 'u32') dv.setUint32(offset, value >>> 0, true);
  else dv.setBigUint64(offset, BigInt(value), true);
}

/**
 * One struct of <linux/vfio.h>: its size, the `minsz` drivers require (offsetofend of the last
 * field they know) and the offset and width of each field. Both sides use it: the user encodes
 * the request and decodes the reply; a driver copies the request in and the reply out, as
 * copy_from_user()/copy_to_user() do, with EFAULT when the user's buffer is too short.
 */
export class VfioStruct<T extends { [K in keyof T]: number }> {
  readonly name: string;
  readonly size: number;
  readonly minsz: number;
  readonly fields: Fields<T>;

  constructor(name: string, size: number, minsz: number, fields: Fields<T>) {
    this.name = name;
    this.size = size;
    this.minsz = minsz;
    this.fields = fields;
  }

  /**
   * Encodes `value` into a new buffer of `size` bytes (or `into`); absent fields are 0 and an
   * absent `argsz` is the struct size.
   */
  encode(value: Partial<T>, into?: Uint8Array): Uint8Array {
    const buf = into ?? new Uint8Array(this.size);
    if (buf.length < this.size) {
      throw new RangeError(`vfio: ${this.name} needs ${this.size} bytes, got ${buf.length}`);
    }
    const dv = view(buf);
    for (const key of Object.keys(this.fields) as (keyof T & string)[]) {
      const [offset, type] = this.fields[key];
      let v = value[key] as number | undefined;
      if (v === undefined && key === 'argsz') v = this.size;
      writeField(dv, offset, type, v ?? 0);
    }
    return buf;
  }

  /** Decodes every field; the buffer must hold the whole struct (RangeError otherwise). */
  decode(buf: Uint8Array): T {
    if (buf.length < this.size) {
      throw new RangeError(`vfio: ${this.name} needs ${this.size} bytes, got ${buf.length}`);
    }
    return this.decodeFields(buf, this.size);
  }

  /**
   * Driver side: copy_from_user(&s, arg, minsz). Fields past `minsz` read as 0. EFAULT when the
   * user's buffer is missing or shorter than `minsz`.
   */
  copyFromUser(arg: Uint8Array | null, minsz = this.minsz): T {
    if (!arg || arg.length < minsz) {
      throw new KernelError('EFAULT', `vfio: ${this.name}: user buffer shorter than ${minsz}`);
    }
    return this.decodeFields(arg, minsz);
  }

  /** Driver side: copy_to_user(arg, &s, minsz). EFAULT when the user's buffer is too short. */
  copyToUser(arg: Uint8Array | null, value: Partial<T>, minsz = this.minsz): void {
    if (!arg || arg.length < minsz) {
      throw new KernelError('EFAULT', `vfio: ${this.name}: user buffer shorter than ${minsz}`);
    }
    const tmp = this.encode(value);
    arg.set(tmp.subarray(0, minsz));
  }

  private decodeFields(buf: Uint8Array, limit: number): T {
    const dv = view(buf);
    const out: Record<string, number> = {};
    for (const key of Object.keys(this.fields)) {
      const [offset, type] = this.fields[key as keyof T];
      const width = type === 'u16' ? 2 : type === 'u32' ? 4 : 8;
      out[key] = offset + width <= limit ? readField(dv, offset, type) : 0;
    }
    return out as T;
  }
}

/** struct vfio_device_info. */
export interface VfioDeviceInfo {
  argsz: number;
  flags: number;
  numRegions: number;
  numIrqs: number;
  capOffset: number;
}
export const vfioDeviceInfo = new VfioStruct<VfioDeviceInfo>(
  'vfio_device_info',
  VFIO_DEVICE_INFO_SIZE,
  VFIO_DEVICE_INFO_MINSZ,
  {
    argsz: [VFIO_DEVICE_INFO_ARGSZ, 'u32'],
    flags: [VFIO_DEVICE_INFO_FLAGS, 'u32'],
    numRegions: [VFIO_DEVICE_INFO_NUM_REGIONS, 'u32'],
    numIrqs: [VFIO_DEVICE_INFO_NUM_IRQS, 'u32'],
    capOffset: [VFIO_DEVICE_INFO_CAP_OFFSET, 'u32'],
  },
);

/** struct vfio_region_info. */
export interface VfioRegionInfo {
  argsz: number;
  flags: number;
  index: number;
  capOffset: number;
  size: number;
  offset: number;
}
export const vfioRegionInfo = new VfioStruct<VfioRegionInfo>(
  'vfio_region_info',
  VFIO_REGION_INFO_SIZE,
  VFIO_REGION_INFO_SIZE,
  {
    argsz: [VFIO_REGION_INFO_ARGSZ, 'u32'],
    flags: [VFIO_REGION_INFO_FLAGS, 'u32'],
    index: [VFIO_REGION_INFO_INDEX, 'u32'],
    capOffset: [VFIO_REGION_INFO_CAP_OFFSET, 'u32'],
    size: [VFIO_REGION_INFO_SIZE_FIELD, 'u64'],
    offset: [VFIO_REGION_INFO_OFFSET_FIELD, 'u64'],
  },
);

/** struct vfio_irq_info. */
export interface VfioIrqInfo {
  argsz: number;
  flags: number;
  index: number;
  count: number;
}
export const vfioIrqInfo = new VfioStruct<VfioIrqInfo>(
  'vfio_irq_info',
  VFIO_IRQ_INFO_SIZE,
  VFIO_IRQ_INFO_SIZE,
  {
    argsz: [VFIO_IRQ_INFO_ARGSZ, 'u32'],
    flags: [VFIO_IRQ_INFO_FLAGS, 'u32'],
    index: [VFIO_IRQ_INFO_INDEX, 'u32'],
    count: [VFIO_IRQ_INFO_COUNT, 'u32'],
  },
);

/** The header of struct vfio_irq_set (the `data` array follows it). */
export interface VfioIrqSet {
  argsz: number;
  flags: number;
  index: number;
  start: number;
  count: number;
}
export const vfioIrqSet = new VfioStruct<VfioIrqSet>(
  'vfio_irq_set',
  VFIO_IRQ_SET_SIZE,
  VFIO_IRQ_SET_SIZE,
  {
    argsz: [VFIO_IRQ_SET_ARGSZ, 'u32'],
    flags: [VFIO_IRQ_SET_FLAGS, 'u32'],
    index: [VFIO_IRQ_SET_INDEX, 'u32'],
    start: [VFIO_IRQ_SET_START, 'u32'],
    count: [VFIO_IRQ_SET_COUNT, 'u32'],
  },
);

/** struct vfio_device_gfx_plane_info (`regionIndex` and `dmabufId` share the union). */
export interface VfioGfxPlaneInfo {
  argsz: number;
  flags: number;
  drmPlaneType: number;
  drmFormat: number;
  drmFormatMod: number;
  width: number;
  height: number;
  stride: number;
  size: number;
  xPos: number;
  yPos: number;
  xHot: number;
  yHot: number;
  /** The union's value: `region_index` for REGION planes, `dmabuf_id` for DMABUF planes. */
  dmabufId: number;
}
export const vfioGfxPlaneInfo = new VfioStruct<VfioGfxPlaneInfo>(
  'vfio_device_gfx_plane_info',
  VFIO_GFX_PLANE_INFO_SIZE,
  VFIO_GFX_PLANE_INFO_MINSZ,
  {
    argsz: [VFIO_GFX_PLANE_INFO_ARGSZ, 'u32'],
    flags: [VFIO_GFX_PLANE_INFO_FLAGS, 'u32'],
    drmPlaneType: [VFIO_GFX_PLANE_INFO_DRM_PLANE_TYPE, 'u32'],
    drmFormat: [VFIO_GFX_PLANE_INFO_DRM_FORMAT, 'u32'],
    drmFormatMod: [VFIO_GFX_PLANE_INFO_DRM_FORMAT_MOD, 'u64'],
    width: [VFIO_GFX_PLANE_INFO_WIDTH, 'u32'],
    height: [VFIO_GFX_PLANE_INFO_HEIGHT, 'u32'],
    stride: [VFIO_GFX_PLANE_INFO_STRIDE, 'u32'],
    size: [VFIO_GFX_PLANE_INFO_SIZE_FIELD, 'u32'],
    xPos: [VFIO_GFX_PLANE_INFO_X_POS, 'u32'],
    yPos: [VFIO_GFX_PLANE_INFO_Y_POS, 'u32'],
    xHot: [VFIO_GFX_PLANE_INFO_X_HOT, 'u32'],
    yHot: [VFIO_GFX_PLANE_INFO_Y_HOT, 'u32'],
    dmabufId: [VFIO_GFX_PLANE_INFO_DMABUF_ID, 'u32'],
  },
);

/** struct vfio_region_gfx_edid: the register block at the start of an EDID region. */
export interface VfioRegionGfxEdid {
  edidOffset: number;
  edidMaxSize: number;
  edidSize: number;
  maxXres: number;
  maxYres: number;
  linkState: number;
}
export const vfioRegionGfxEdid = new VfioStruct<VfioRegionGfxEdid>(
  'vfio_region_gfx_edid',
  VFIO_REGION_GFX_EDID_SIZE,
  VFIO_REGION_GFX_EDID_SIZE,
  {
    edidOffset: [VFIO_REGION_GFX_EDID_EDID_OFFSET, 'u32'],
    edidMaxSize: [VFIO_REGION_GFX_EDID_EDID_MAX_SIZE, 'u32'],
    edidSize: [VFIO_REGION_GFX_EDID_EDID_SIZE, 'u32'],
    maxXres: [VFIO_REGION_GFX_EDID_MAX_XRES, 'u32'],
    maxYres: [VFIO_REGION_GFX_EDID_MAX_YRES, 'u32'],
    linkState: [VFIO_REGION_GFX_EDID_LINK_STATE, 'u32'],
  },
);

// ---------------------------------------------------------------------------------------------
// Capability chains (struct vfio_info_cap_header): `next` is the offset of the next capability
// from the start of the info struct, 0 at the end of the chain.

/** A capability as a driver adds it: id, version and the bytes after the 8-byte header. */
export interface VfioInfoCap {
  id: number;
  version: number;
  /** The capability's bytes after the header. */
  body: Uint8Array;
}

/** A capability found in a reply: where it starts (from the info struct) and all its bytes. */
export interface VfioInfoCapFound {
  id: number;
  version: number;
  /** Offset of the capability header from the start of the info struct. */
  offset: number;
  /** The capability's bytes, header included, up to the next capability or the end of argsz. */
  bytes: Uint8Array;
}

/** Mirrors a struct vfio_region_info_cap_type (version 1) being added to a chain. */
export function vfioCapType(type: number, subtype: number): VfioInfoCap {
  const body = new Uint8Array(VFIO_REGION_INFO_CAP_TYPE_SIZE - VFIO_INFO_CAP_HEADER_SIZE);
  const dv = view(body);
  dv.setUint32(VFIO_REGION_INFO_CAP_TYPE_TYPE - VFIO_INFO_CAP_HEADER_SIZE, type >>> 0, true);
  dv.setUint32(VFIO_REGION_INFO_CAP_TYPE_SUBTYPE - VFIO_INFO_CAP_HEADER_SIZE, subtype >>> 0, true);
  return { id: VFIO_REGION_INFO_CAP_TYPE, version: 1, body };
}

/** A struct vfio_region_sparse_mmap_area. */
export interface VfioSparseMmapArea {
  offset: number;
  size: number;
}

/** Mirrors a struct vfio_region_info_cap_sparse_mmap (version 1) being added to a chain. */
export function vfioCapSparseMmap(areas: readonly VfioSparseMmapArea[]): VfioInfoCap {
  const head = VFIO_REGION_INFO_CAP_SPARSE_MMAP_AREAS - VFIO_INFO_CAP_HEADER_SIZE;
  const body = new Uint8Array(head + areas.length * VFIO_REGION_SPARSE_MMAP_AREA_SIZE);
  const dv = view(body);
  dv.setUint32(
    VFIO_REGION_INFO_CAP_SPARSE_MMAP_NR_AREAS - VFIO_INFO_CAP_HEADER_SIZE,
    areas.length,
    true,
  );
  areas.forEach((a, i) => {
    const at = head + i * VFIO_REGION_SPARSE_MMAP_AREA_SIZE;
    dv.setBigUint64(at, BigInt(a.offset), true);
    dv.setBigUint64(at + 8, BigInt(a.size), true);
  });
  return { id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1, body };
}

/**
 * Lays out a capability chain as vfio_info_cap_add() + vfio_info_cap_shift() do: each
 * capability 8-byte aligned, `next` counted from the start of the info struct, which the chain
 * follows at `base` bytes.
 */
export function vfioCapChainBytes(caps: readonly VfioInfoCap[], base: number): Uint8Array {
  const starts: number[] = [];
  let len = 0;
  for (const cap of caps) {
    starts.push(len);
    len += VFIO_INFO_CAP_HEADER_SIZE + cap.body.length;
    len = (len + 7) & ~7;
  }
  const out = new Uint8Array(len);
  const dv = view(out);
  caps.forEach((cap, i) => {
    const at = starts[i]!;
    dv.setUint16(at + VFIO_INFO_CAP_HEADER_ID, cap.id, true);
    dv.setUint16(at + VFIO_INFO_CAP_HEADER_VERSION, cap.version, true);
    const next = i + 1 < caps.length ? base + starts[i + 1]! : 0;
    dv.setUint32(at + VFIO_INFO_CAP_HEADER_NEXT, next, true);
    out.set(cap.body, at + VFIO_INFO_CAP_HEADER_SIZE);
  });
  return out;
}

/**
 * Driver side of VFIO_DEVICE_GET_REGION_INFO's reply, as vfio-pci and mbochs do it: with
 * capabilities, FLAG_CAPS is set; when the user's argsz is too small for the chain, argsz is
 * raised to what is needed and cap_offset stays 0 (the user retries with a bigger buffer);
 * otherwise the chain is copied after the struct and cap_offset points at it.
 */
export function vfioRegionInfoReply(
  arg: Uint8Array | null,
  request: VfioRegionInfo,
  reply: Omit<VfioRegionInfo, 'argsz' | 'capOffset'>,
  caps: readonly VfioInfoCap[] = [],
): void {
  const minsz = vfioRegionInfo.minsz;
  const out: VfioRegionInfo = { ...reply, argsz: request.argsz, capOffset: 0 };
  if (caps.length) {
    const chain = vfioCapChainBytes(caps, minsz);
    out.flags |= VFIO_REGION_INFO_FLAG_CAPS;
    if (request.argsz < minsz + chain.length) {
      out.argsz = minsz + chain.length;
    } else {
      if (!arg || arg.length < minsz + chain.length) {
        throw new KernelError('EFAULT', 'vfio: region info buffer shorter than its argsz');
      }
      arg.set(chain, minsz);
      out.capOffset = minsz;
    }
  }
  vfioRegionInfo.copyToUser(arg, out);
}

/**
 * User side: walks the capability chain of an info reply from `capOffset`. Bounds-checked, each
 * `next` must move forward (a chain cannot loop). EINVAL for a malformed chain.
 */
export function vfioInfoCaps(buf: Uint8Array, capOffset: number): VfioInfoCapFound[] {
  const found: VfioInfoCapFound[] = [];
  const dv = view(buf);
  let at = capOffset;
  let prev = -1;
  while (at !== 0) {
    if (at <= prev || at + VFIO_INFO_CAP_HEADER_SIZE > buf.length) {
      throw new KernelError('EINVAL', `vfio: capability at ${at} is outside the reply`);
    }
    const id = dv.getUint16(at + VFIO_INFO_CAP_HEADER_ID, true);
    const version = dv.getUint16(at + VFIO_INFO_CAP_HEADER_VERSION, true);
    const next = dv.getUint32(at + VFIO_INFO_CAP_HEADER_NEXT, true);
    const end = next !== 0 ? Math.min(next, buf.length) : buf.length;
    found.push({ id, version, offset: at, bytes: buf.subarray(at, Math.max(end, at)) });
    prev = at;
    at = next;
  }
  return found;
}

/** Decodes a VFIO_REGION_INFO_CAP_TYPE capability. */
export function vfioDecodeCapType(cap: VfioInfoCapFound): { type: number; subtype: number } {
  if (cap.id !== VFIO_REGION_INFO_CAP_TYPE || cap.bytes.length < VFIO_REGION_INFO_CAP_TYPE_SIZE) {
    throw new KernelError('EINVAL', `vfio: capability ${cap.id} is not a region type`);
  }
  const dv = view(cap.bytes);
  return {
    type: dv.getUint32(VFIO_REGION_INFO_CAP_TYPE_TYPE, true),
    subtype: dv.getUint32(VFIO_REGION_INFO_CAP_TYPE_SUBTYPE, true),
  };
}

/** Decodes a VFIO_REGION_INFO_CAP_SPARSE_MMAP capability. */
export function vfioDecodeCapSparseMmap(cap: VfioInfoCapFound): VfioSparseMmapArea[] {
  const dv = view(cap.bytes);
  if (
    cap.id !== VFIO_REGION_INFO_CAP_SPARSE_MMAP ||
    cap.bytes.length < VFIO_REGION_INFO_CAP_SPARSE_MMAP_AREAS
  ) {
    throw new KernelError('EINVAL', `vfio: capability ${cap.id} is not a sparse mmap`);
  }
  const n = dv.getUint32(VFIO_REGION_INFO_CAP_SPARSE_MMAP_NR_AREAS, true);
  const need = VFIO_REGION_INFO_CAP_SPARSE_MMAP_AREAS + n * VFIO_REGION_SPARSE_MMAP_AREA_SIZE;
  if (need > cap.bytes.length) {
    throw new KernelError('EINVAL', `vfio: sparse mmap capability claims ${n} areas`);
  }
  const areas: VfioSparseMmapArea[] = [];
  for (let i = 0; i < n; i++) {
    const at = VFIO_REGION_INFO_CAP_SPARSE_MMAP_AREAS + i * VFIO_REGION_SPARSE_MMAP_AREA_SIZE;
    areas.push({
      offset: Number(dv.getBigUint64(at, true)),
      size: Number(dv.getBigUint64(at + 8, true)),
    });
  }
  return areas;
}

// ---------------------------------------------------------------------------------------------
// VFIO_DEVICE_SET_IRQS payloads.

/** Something with a file descriptor number (an Eventfd), or a raw fd (-1 de-assigns). */
export type FdLike = number | { readonly fd: number };

/** The request of VFIO_DEVICE_SET_IRQS as a user writes it. */
export interface VfioIrqSetRequest {
  flags: number;
  index: number;
  start?: number;
  /** Defaults to the number of data entries (0 with DATA_NONE and no data). */
  count?: number;
  /** DATA_EVENTFD: one fd (s32) per vector; DATA_BOOL: one u8 per vector. */
  data?: readonly FdLike[] | readonly boolean[];
}

/** Encodes struct vfio_irq_set followed by its data array, with argsz covering both. */
export function encodeIrqSet(req: VfioIrqSetRequest): Uint8Array {
  const data: readonly (FdLike | boolean)[] = req.data ?? [];
  const type = req.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
  const width = type === VFIO_IRQ_SET_DATA_EVENTFD ? 4 : type === VFIO_IRQ_SET_DATA_BOOL ? 1 : 0;
  const buf = new Uint8Array(VFIO_IRQ_SET_SIZE + data.length * width);
  vfioIrqSet.encode(
    {
      argsz: buf.length,
      flags: req.flags,
      index: req.index,
      start: req.start ?? 0,
      count: req.count ?? data.length,
    },
    buf,
  );
  const dv = view(buf);
  data.forEach((d, i) => {
    if (width === 4) {
      const fd = typeof d === 'number' ? d : typeof d === 'boolean' ? Number(d) : d.fd;
      dv.setInt32(VFIO_IRQ_SET_SIZE + i * 4, fd, true);
    } else if (width === 1) {
      dv.setUint8(VFIO_IRQ_SET_SIZE + i, d === true || d === 1 ? 1 : 0);
    }
  });
  return buf;
}

/**
 * Mirrors vfio_set_irqs_validate_and_prepare(hdr, num_irqs, max_irq_type, &data_size): checks a
 * SET_IRQS header against `numIrqs`, the vectors of the index it names (vfio-pci passes
 * vfio_pci_get_irq_count(index)), and `maxIrqType`, the number of irq indexes of the device
 * (VFIO_PCI_NUM_IRQS), and returns the size of the data array that follows. EINVAL for an argsz
 * below minsz, an index >= maxIrqType, unknown flags, a vector range outside the index's vectors
 * (whatever the data type: DATA_NONE triggers and masks name vectors too), a data type that is
 * not exactly one of NONE/BOOL/EVENTFD, or an argsz too short for the data.
 */
export function vfioSetIrqsValidateAndPrepare(
  hdr: VfioIrqSet,
  numIrqs: number,
  maxIrqType: number,
): number {
  const minsz = VFIO_IRQ_SET_SIZE;
  if (hdr.argsz < minsz) throw new KernelError('EINVAL', 'SET_IRQS: argsz below minsz');
  if (hdr.index >= maxIrqType) {
    throw new KernelError('EINVAL', `SET_IRQS: irq index ${hdr.index} >= ${maxIrqType}`);
  }
  // The kernel's guard against start + count wrapping a u32.
  if (hdr.count >= 0xffffffff - hdr.start) {
    throw new KernelError('EINVAL', `SET_IRQS: count ${hdr.count} from ${hdr.start} wraps`);
  }
  if (hdr.flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) {
    throw new KernelError('EINVAL', `SET_IRQS: unknown flags 0x${hdr.flags.toString(16)}`);
  }
  if (hdr.start >= numIrqs || hdr.start + hdr.count > numIrqs) {
    throw new KernelError(
      'EINVAL',
      `SET_IRQS: vectors ${hdr.start}+${hdr.count} outside the ${numIrqs} of index ${hdr.index}`,
    );
  }
  let size: number;
  switch (hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_NONE:
      size = 0;
      break;
    case VFIO_IRQ_SET_DATA_BOOL:
      size = 1;
      break;
    case VFIO_IRQ_SET_DATA_EVENTFD:
      size = 4;
      break;
    default:
      throw new KernelError('EINVAL', 'SET_IRQS: the data type must be one of NONE/BOOL/EVENTFD');
  }
  if (hdr.argsz - minsz < hdr.count * size) {
    throw new KernelError('EINVAL', `SET_IRQS: argsz ${hdr.argsz} too short for the data`);
  }
  return hdr.count * size;
}

/**
 * Driver side: the data array of a SET_IRQS request (memdup_user of `dataSize` bytes after the
 * header), as s32 fds for DATA_EVENTFD or 0/1 for DATA_BOOL. EFAULT when the buffer is short.
 */
export function vfioIrqSetData(
  arg: Uint8Array | null,
  hdr: VfioIrqSet,
  dataSize: number,
): number[] {
  if (!arg || arg.length < VFIO_IRQ_SET_SIZE + dataSize) {
    throw new KernelError('EFAULT', 'SET_IRQS: data shorter than argsz says');
  }
  const dv = view(arg);
  const out: number[] = [];
  const type = hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
  if (type === VFIO_IRQ_SET_DATA_EVENTFD) {
    for (let i = 0; i < dataSize / 4; i++) out.push(dv.getInt32(VFIO_IRQ_SET_SIZE + i * 4, true));
  } else if (type === VFIO_IRQ_SET_DATA_BOOL) {
    for (let i = 0; i < dataSize; i++) out.push(dv.getUint8(VFIO_IRQ_SET_SIZE + i) ? 1 : 0);
  }
  return out;
}

/**
 * The samples' read/write loop: splits an access of `buf.length` bytes at `pos` into naturally
 * aligned pieces (4 bytes when at least 4 remain and `pos` is 4-aligned, else 2 when 2-aligned,
 * else 1) and calls `access` for each. A piece it refuses (returns false or throws) fails the
 * whole access with EFAULT, as mtty/mdpy/mbochs return -EFAULT. Returns the byte count.
 */
export function vfioSplitAccess(
  buf: Uint8Array,
  pos: number,
  access: (piece: Uint8Array, pos: number) => boolean | undefined,
): number {
  let done = 0;
  while (done < buf.length) {
    const at = pos + done;
    const left = buf.length - done;
    const n = left >= 4 && at % 4 === 0 ? 4 : left >= 2 && at % 2 === 0 ? 2 : 1;
    let ok: boolean | undefined;
    try {
      ok = access(buf.subarray(done, done + n), at);
    } catch (err) {
      throw new KernelError('EFAULT', `vfio: access of ${n} bytes at 0x${at.toString(16)}: ${err}`);
    }
    if (ok === false) {
      throw new KernelError('EFAULT', `vfio: access of ${n} bytes at 0x${at.toString(16)} refused`);
    }
    done += n;
  }
  return done;
}
