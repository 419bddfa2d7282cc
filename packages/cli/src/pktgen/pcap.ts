import { closeSync, constants, openSync, statSync, writeSync } from 'node:fs';

/** pcap file format constants (the classic libpcap format, microsecond timestamps). */
const PCAP_MAGIC = 0xa1b2c3d4;
const PCAP_VERSION_MAJOR = 2;
const PCAP_VERSION_MINOR = 4;
const PCAP_SNAPLEN = 65535;
/** LINKTYPE_ETHERNET. */
const LINKTYPE_ETHERNET = 1;
const GLOBAL_HEADER = 24;
const RECORD_HEADER = 16;
/** Records are gathered into a chunk of this many bytes and written when it is full. */
const CHUNK_BYTES = 1 << 20;

/** A pcap file that could not be opened or written; `code` is the errno name (ENOENT, ...). */
export class PcapError extends Error {
  constructor(
    readonly path: string,
    readonly code: string,
  ) {
    super(`cannot write ${path}: ${code}`);
    this.name = 'PcapError';
  }
}

function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'EIO';
}

/** The wall clock in milliseconds, with the sub-millisecond fraction `Date.now()` drops. */
const wallClockMs = () => performance.timeOrigin + performance.now();

/** How often `PcapWriter.open` looks again for a reader of a FIFO. */
const FIFO_RETRY_MS = 50;

/** Options of a PcapWriter. */
export interface PcapWriterOptions {
  /** The clock records are stamped with, in milliseconds since the epoch (default: wall clock). */
  now?: () => number;
}

/**
 * Writes frames to a pcap file that tcpdump, tshark and Wireshark read.
 *
 * The file is opened in the constructor, so a path that cannot be written fails before any
 * frame is sent. Records go into one reusable chunk, written with `writeSync` when full: the
 * receiver can never run ahead of the disk (a stream's buffered writes grew to hundreds of MB on
 * a long run of large frames), and nothing is allocated per frame but a view of it. A write
 * error stops the writing and is thrown by `close`.
 */
export class PcapWriter {
  readonly path: string;
  frames = 0;
  private fd: number | null;
  private readonly chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  private used = 0;
  private error: string | null = null;
  private readonly now: () => number;

  /**
   * Opens `path` for writing now (a FIFO, whose open waits for a reader, goes through `open`);
   * PcapError if it cannot be. A regular file is created or truncated.
   */
  static async open(
    path: string,
    options: PcapWriterOptions & { onWait?: () => void; signal?: AbortSignal } = {},
  ): Promise<PcapWriter> {
    let fifo = false;
    try {
      fifo = statSync(path).isFIFO();
    } catch {
      // Nothing there yet (the open creates it), or a path the open reports on.
    }
    if (!fifo) return new PcapWriter(path, { now: options.now });
    // open(2) of a FIFO for writing blocks until a reader opens it, and a blocked open holds the
    // whole thread (no output, no Ctrl-C). Looked at with O_NONBLOCK, it fails with ENXIO while
    // no one reads: say so once and look again, then open it blocking for the writes (a reader
    // is there, so that open returns at once) and let the probe go.
    let waiting = false;
    for (;;) {
      if (options.signal?.aborted) throw new PcapError(path, 'EINTR');
      let probe: number | null = null;
      try {
        probe = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
      } catch (err) {
        if (errnoCode(err) !== 'ENXIO') throw new PcapError(path, errnoCode(err));
      }
      if (probe !== null) {
        try {
          return new PcapWriter(path, { now: options.now });
        } finally {
          closeSync(probe);
        }
      }
      if (!waiting) options.onWait?.();
      waiting = true;
      await new Promise((resolve) => setTimeout(resolve, FIFO_RETRY_MS));
    }
  }

  /** Opens (creates or truncates) `path`; PcapError if it cannot be. */
  constructor(path: string, options: PcapWriterOptions = {}) {
    this.path = path;
    this.now = options.now ?? wallClockMs;
    try {
      this.fd = openSync(path, 'w');
    } catch (err) {
      throw new PcapError(path, errnoCode(err));
    }
    const h = this.chunk;
    h.writeUInt32LE(PCAP_MAGIC, 0);
    h.writeUInt16LE(PCAP_VERSION_MAJOR, 4);
    h.writeUInt16LE(PCAP_VERSION_MINOR, 6);
    h.writeInt32LE(0, 8); // thiszone
    h.writeUInt32LE(0, 12); // sigfigs
    h.writeUInt32LE(PCAP_SNAPLEN, 16);
    h.writeUInt32LE(LINKTYPE_ETHERNET, 20);
    this.used = GLOBAL_HEADER;
  }

  /** Appends one frame (copied). */
  write(buf: Uint8Array, offset: number, length: number): void {
    if (this.error !== null || this.fd === null) return;
    if (this.used + RECORD_HEADER + length > CHUNK_BYTES) {
      this.flush();
      // Only a frame larger than the chunk itself (none pktgen sends) is left to write alone.
      if (RECORD_HEADER + length > CHUNK_BYTES) {
        this.recordHeader(length);
        this.flush();
        this.writeAll(buf, offset, length);
        this.frames++;
        return;
      }
    }
    this.recordHeader(length);
    this.chunk.set(buf.subarray(offset, offset + length), this.used);
    this.used += length;
    this.frames++;
  }

  /** Writes what is buffered and closes the file; PcapError if any write failed. */
  close(): void {
    if (this.fd === null) return;
    this.flush();
    const fd = this.fd;
    this.fd = null;
    try {
      closeSync(fd);
    } catch (err) {
      this.error ??= errnoCode(err);
    }
    if (this.error !== null) throw new PcapError(this.path, this.error);
  }

  private recordHeader(length: number): void {
    // The header's magic (0xa1b2c3d4) says ts_usec counts microseconds: stamp them, not whole
    // milliseconds times 1000.
    const us = Math.floor(this.now() * 1000);
    const h = this.chunk;
    const at = this.used;
    h.writeUInt32LE(Math.floor(us / 1e6), at);
    h.writeUInt32LE(us % 1e6, at + 4);
    h.writeUInt32LE(length, at + 8);
    h.writeUInt32LE(length, at + 12);
    this.used = at + RECORD_HEADER;
  }

  private flush(): void {
    const n = this.used;
    this.used = 0;
    if (n > 0) this.writeAll(this.chunk, 0, n);
  }

  /** Writes all of `buf[offset, offset + length)`; keeps the first error, drops what follows. */
  private writeAll(buf: Uint8Array, offset: number, length: number): void {
    if (this.error !== null || this.fd === null) return;
    try {
      let done = 0;
      while (done < length) done += writeSync(this.fd, buf, offset + done, length - done);
    } catch (err) {
      this.error = errnoCode(err);
    }
  }
}
