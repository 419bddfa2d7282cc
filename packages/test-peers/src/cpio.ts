/**
 * The "newc" cpio format (magic `070701`), the one the kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst, init/initramfs.c): per entry a
 * 110-byte ASCII header of thirteen 8-digit hex fields, the NUL-terminated name, padding to a
 * multiple of 4, the data, padding to a multiple of 4; the archive ends with `TRAILER!!!`.
 */

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;

/** One archive member. A symlink's data is its target; a device node carries its rdev. */
export interface CpioEntry {
  /** Path inside the archive, without a leading slash (`bin/busybox`). */
  name: string;
  /** File type and permission bits (`S_IFREG | 0o755`). */
  mode: number;
  data?: Uint8Array;
  uid?: number;
  gid?: number;
  mtime?: number;
  rdevMajor?: number;
  rdevMinor?: number;
}

const MAGIC = '070701';
const HEADER = 110;
const TRAILER = 'TRAILER!!!';
const MAX_FIELD = 0xffff_ffff;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function hex8(value: number, field: string, name: string): string {
  if (!Number.isInteger(value) || value < 0 || value > MAX_FIELD) {
    throw new Error(`cpio: ${name}: ${field} ${value} does not fit a newc header field`);
  }
  return value.toString(16).padStart(8, '0');
}

/** Serializes `entries` (in order, each parent directory before what it holds) to newc bytes. */
export function writeCpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (e: CpioEntry, nlink: number) => {
    const name = Buffer.from(`${e.name}\0`, 'utf8');
    const data = e.data ?? new Uint8Array(0);
    const fields = [
      ino++,
      e.mode,
      e.uid ?? 0,
      e.gid ?? 0,
      nlink,
      e.mtime ?? 0,
      data.byteLength,
      0,
      0,
      e.rdevMajor ?? 0,
      e.rdevMinor ?? 0,
      name.byteLength,
      0,
    ];
    const labels = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize'];
    const header = MAGIC + fields.map((v, i) => hex8(v, labels[i] ?? 'field', e.name)).join('');
    parts.push(Buffer.from(header, 'ascii'), name, Buffer.alloc(pad4(HEADER + name.byteLength)));
    parts.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    parts.push(Buffer.alloc(pad4(data.byteLength)));
  };
  for (const e of entries) {
    if (e.name === '' || e.name.startsWith('/') || e.name === TRAILER) {
      throw new Error(`cpio: bad member name ${JSON.stringify(e.name)}`);
    }
    push(e, (e.mode & S_IFMT) === S_IFDIR ? 2 : 1);
  }
  push({ name: TRAILER, mode: 0 }, 1);
  return Buffer.concat(parts);
}

/** Parses newc bytes back into entries (the trailer excluded); malformed input throws. */
export function readCpio(bytes: Uint8Array): CpioEntry[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: CpioEntry[] = [];
  let off = 0;
  for (;;) {
    if (off + HEADER > buf.byteLength) throw new Error(`cpio: truncated header at ${off}`);
    const magic = buf.toString('ascii', off, off + 6);
    if (magic !== MAGIC) throw new Error(`cpio: bad magic ${JSON.stringify(magic)} at ${off}`);
    const field = (i: number) => {
      const s = buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8);
      if (!/^[0-9a-fA-F]{8}$/.test(s)) throw new Error(`cpio: bad header field at ${off}`);
      return Number.parseInt(s, 16);
    };
    const mode = field(1);
    const size = field(6);
    const namesize = field(11);
    const nameStart = off + HEADER;
    const dataStart = nameStart + namesize + pad4(HEADER + namesize);
    if (namesize < 1 || dataStart + size > buf.byteLength) {
      throw new Error(`cpio: member at ${off} runs past the end`);
    }
    if (buf[nameStart + namesize - 1] !== 0) throw new Error(`cpio: unterminated name at ${off}`);
    const name = buf.toString('utf8', nameStart, nameStart + namesize - 1);
    if (name === TRAILER) return out;
    out.push({
      name,
      mode,
      uid: field(2),
      gid: field(3),
      mtime: field(5),
      rdevMajor: field(9),
      rdevMinor: field(10),
      data: buf.subarray(dataStart, dataStart + size),
    });
    off = dataStart + size + pad4(size);
  }
}
