import { createWriteStream, type WriteStream } from 'node:fs';

/** pcap file format constants (the classic libpcap format, microsecond timestamps). */
const PCAP_MAGIC = 0xa1b2c3d4;
const PCAP_VERSION_MAJOR = 2;
const PCAP_VERSION_MINOR = 4;
const PCAP_SNAPLEN = 65535;
/** LINKTYPE_ETHERNET. */
const LINKTYPE_ETHERNET = 1;
const GLOBAL_HEADER = 24;
const RECORD_HEADER = 16;

/** Writes frames to a pcap file that tcpdump, tshark and Wireshark read. */
export class PcapWriter {
  private readonly out: WriteStream;
  frames = 0;

  constructor(path: string) {
    this.out = createWriteStream(path);
    const h = Buffer.alloc(GLOBAL_HEADER);
    h.writeUInt32LE(PCAP_MAGIC, 0);
    h.writeUInt16LE(PCAP_VERSION_MAJOR, 4);
    h.writeUInt16LE(PCAP_VERSION_MINOR, 6);
    h.writeInt32LE(0, 8); // thiszone
    h.writeUInt32LE(0, 12); // sigfigs
    h.writeUInt32LE(PCAP_SNAPLEN, 16);
    h.writeUInt32LE(LINKTYPE_ETHERNET, 20);
    this.out.write(h);
  }

  /** Appends one frame (copied). */
  write(buf: Uint8Array, offset: number, length: number): void {
    const now = Date.now();
    const rec = Buffer.alloc(RECORD_HEADER + length);
    rec.writeUInt32LE(Math.floor(now / 1000), 0);
    rec.writeUInt32LE((now % 1000) * 1000, 4);
    rec.writeUInt32LE(length, 8);
    rec.writeUInt32LE(length, 12);
    rec.set(buf.subarray(offset, offset + length), RECORD_HEADER);
    this.out.write(rec);
    this.frames++;
  }

  /** Flushes and closes the file. */
  close(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.out.once('error', reject);
      this.out.end(resolve);
    });
  }
}
