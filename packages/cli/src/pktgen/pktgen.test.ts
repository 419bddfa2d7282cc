import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mdevDevices } from '@mdev/mdev-core';
import { mvnetLoopbackInit } from '@mdev/mvnet-loopback';
import { hostRam } from '@mdev/virtio';
import { netdevList } from '@mdev/virtio-net';
import { describe, expect, it } from 'vitest';
import { main } from '../cli';
import { capture } from '../testing/capture';
import { PcapError, PcapWriter } from './pcap';
import { MVNET_TYPE_PATH, registerPktgenDevice, runPktgen, setupStack } from './run';

describe('mdev pktgen', () => {
  it('sends frames of every size through virtio-net and mvnet_loopback and gets each back intact', async () => {
    const stack = setupStack();
    try {
      for (const size of [60, 61, 64, 512, 1514]) {
        const r = await runPktgen(stack, { count: 3000, size, burst: 32, verify: true });
        expect({
          tx: r.tx,
          rx: r.rx,
          dropped: r.dropped,
          corrupted: r.corrupted,
          reordered: r.reordered,
          lost: r.lost,
        }).toEqual({ tx: 3000, rx: 3000, dropped: 0, corrupted: 0, reordered: 0, lost: 0 });
      }
      expect(stack.mvnet!.stateOf(stack.mdev).stats.rxPackets).toBe(5 * 3000);
    } finally {
      stack.teardown();
    }
    expect(mdevDevices()).toHaveLength(0);
    expect(netdevList()).toHaveLength(0);
  });

  it('loses nothing with bursts larger than the NAPI weight', async () => {
    // A burst of 200 lands in the 256 receive buffers at once; the receive softirq must poll
    // again while its polls use their whole weight (64), or the sender's next burst finds the
    // ring still full of unreaped frames and the device drops.
    const stack = setupStack();
    try {
      for (const burst of [65, 128, 200]) {
        const r = await runPktgen(stack, { count: 20_000, size: 64, burst, verify: true });
        expect({
          burst,
          rx: r.rx,
          dropped: r.dropped,
          lost: r.lost,
          corrupted: r.corrupted,
        }).toEqual({ burst, rx: 20_000, dropped: 0, lost: 0, corrupted: 0 });
      }
    } finally {
      stack.teardown();
    }
  });

  it('prints the figures for a person as aligned label and value columns', async () => {
    const { io, text } = capture();
    expect(await main(['pktgen', '--count', '100', '--size', '80'], io)).toBe(0);
    const lines = text.out.trimEnd().split('\n');
    const rows = Object.fromEntries(lines.map((l) => [l.split(' ')[0], l]));
    expect(Object.keys(rows)).toEqual([
      'parent',
      'device',
      'datapath',
      'tx',
      'rx',
      'dropped',
      'corrupted',
      'lost',
      'time',
      'rate',
    ]);
    // Every value starts in the same column, one space after the longest label.
    for (const line of lines) expect(line.slice(0, 10).trimEnd().length).toBe(line.indexOf(' '));
    for (const line of lines) expect(line[10]).not.toBe(' ');
    expect(rows.parent).toBe('parent    mvnet_loopback');
    expect(rows.tx).toBe('tx        100');
    expect(rows.rx).toBe('rx        100');
    expect(rows.corrupted).toBe('corrupted 0');
    expect(rows.lost).toBe('lost      0');
    expect(rows.device).toMatch(/^device {4}eth\d+ \(mdev [0-9a-f-]{36}\), 80-byte frames$/);
    expect(rows.rate).toMatch(/^rate {6}\d+\.\d{3} Mpps, \d+\.\d{3} Gbit\/s$/);
  });

  it('prints JSON figures and writes a pcap of the received frames', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pktgen-'));
    const file = join(dir, 'rx.pcap');
    const { io, text } = capture();
    expect(
      await main(['pktgen', '--count', '50', '--size', '100', '--json', '--pcap', file], io),
    ).toBe(0);
    const result = JSON.parse(text.out);
    expect(result).toMatchObject({
      name: 'pktgen',
      tx: 50,
      rx: 50,
      lost: 0,
      corrupted: 0,
      size: 100,
    });
    expect(result.pcap).toEqual({ path: file, frames: 50 });
    const pcap = readFileSync(file);
    expect(pcap.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect(pcap.readUInt32LE(20)).toBe(1); // LINKTYPE_ETHERNET
    expect(pcap.length).toBe(24 + 50 * (16 + 100));
    // The first record is sequence number 0.
    expect(pcap.readUInt32BE(24 + 16 + 14)).toBe(0);
  });

  it('says how many frames it wrote to the pcap, named by its full path from the user folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pktgen-'));
    const { io, text } = capture();
    expect(await main(['pktgen', '--count', '30', '--pcap', 'rel.pcap'], { ...io, cwd: dir })).toBe(
      0,
    );
    expect(text.out).toContain(`\npcap      30 frames written to ${join(dir, 'rel.pcap')}\n`);
    expect(statSync(join(dir, 'rel.pcap')).size).toBe(24 + 30 * (16 + 64));
  });

  it('runs over a parent driver registered by name, and names the known ones on a bad --device', async () => {
    let inits = 0;
    registerPktgenDevice('loopback-test', {
      summary: 'mvnet_loopback under another name',
      init(options) {
        inits++;
        const mvnet = mvnetLoopbackInit({ memory: hostRam.memory, dma: hostRam.dma, ...options });
        return {
          typePath: MVNET_TYPE_PATH,
          txDropped: (mdev) => mvnet.stateOf(mdev).stats.txDropped,
          exit: () => mvnet.exit(),
        };
      },
    });
    expect(() =>
      registerPktgenDevice('loopback-test', { summary: '', init: () => ({}) as never }),
    ).toThrow(/registered/);
    const ok = capture();
    expect(
      await main(['pktgen', '--device', 'loopback-test', '--count', '500', '--json'], ok.io),
    ).toBe(0);
    expect(inits).toBe(1);
    expect(JSON.parse(ok.text.out)).toMatchObject({ tx: 500, rx: 500, lost: 0, corrupted: 0 });
    const bad = capture();
    expect(await main(['pktgen', '--device', 'nope'], bad.io)).toBe(2);
    expect(bad.text.err).toContain("no device 'nope'");
    expect(bad.text.err).toContain('mvnet_loopback');
    expect(bad.text.err).toContain('loopback-test');
    expect(mdevDevices()).toHaveLength(0);
  });

  it('rejects a bad frame size with a clear error', async () => {
    const { io, text } = capture();
    expect(await main(['pktgen', '--size', '20'], io)).toBe(2);
    expect(text.err).toContain('--size');
  });

  it('names the parent driver and the net device apart in the JSON figures', async () => {
    const { io, text } = capture();
    expect(await main(['pktgen', '--count', '10', '--json'], io)).toBe(0);
    const result = JSON.parse(text.out);
    expect(result.parent).toBe('mvnet_loopback');
    expect(result.netdev).toMatch(/^eth\d+$/);
    // `device` held the net device's name, which read as the --device option's value.
    expect(result).not.toHaveProperty('device');
  });

  it('fills the progress bar by time with --duration', async () => {
    const { io, text } = capture();
    (io.stdout as { isTTY?: boolean }).isTTY = true;
    expect(await main(['pktgen', '--duration', '0.7'], io)).toBe(0);
    // Shown about every 200 ms: some of the bar is filled by then (it stayed empty: the target
    // of a timed run is Infinity), and the line is cleared before the figures.
    const bars = [...text.out.matchAll(/\r\[([#.]{30})\] tx \d+ rx \d+/g)].map((m) => m[1]!);
    expect(bars.length).toBeGreaterThan(0);
    expect(bars.at(-1)).toMatch(/^#{6,}/);
    expect(text.out).toContain('\r\x1b[K');
  });
});

describe('mdev pktgen usage errors', () => {
  // Exit status 1 means a frame was lost; a command line pktgen cannot run is 2, with a message
  // and the usage, not an exception's name.
  const cases: [string[], string][] = [
    [['--bogus'], "Unknown option '--bogus'"],
    [['stray'], 'Unexpected argument'],
    [['--count', '1.5'], '--count must be an integer >= 1'],
    [['--count', '0x40'], '--count must be an integer >= 1'],
    [['--count', '1e3'], '--count must be an integer >= 1'],
    [['--count', '0'], '--count must be an integer >= 1'],
    [['--count', ' 8'], '--count must be an integer >= 1'],
    [['--burst', '1.5'], '--burst must be an integer >= 1'],
    [['--size', '64.5'], '--size must be an integer from 60 to 1514'],
    [['--size', '0x40'], '--size must be an integer from 60 to 1514'],
    [['--size', '1515'], '--size must be an integer from 60 to 1514'],
    [['--queue-size', '0x40'], '--queue-size must be a power of two from 2 to 32768'],
    [['--queue-size', '64.0'], '--queue-size must be a power of two from 2 to 32768'],
    [['--duration', '0'], '--duration must be a positive number of seconds'],
    [['--duration', 'Infinity'], '--duration must be a positive number of seconds'],
    [['--duration', '1e-1'], '--duration must be a positive number of seconds'],
    [['--count', '10', '--duration', '1'], 'give --count or --duration, not both'],
  ];
  for (const [args, message] of cases) {
    it(`exits 2 with a message and the usage for ${args.join(' ')}`, async () => {
      const { io, text } = capture();
      expect(await main(['pktgen', ...args], io)).toBe(2);
      const first = `mdev pktgen: ${message}`;
      expect(text.err.slice(0, first.length)).toBe(first);
      expect(text.err).toContain('usage: mdev pktgen');
      expect(text.out).toBe('');
      expect(mdevDevices()).toHaveLength(0);
    });
  }

  it('takes the largest size the device takes, and a fractional duration', async () => {
    const { io } = capture();
    expect(await main(['pktgen', '--count', '10', '--size', '1514'], io)).toBe(0);
    expect(await main(['pktgen', '--duration', '.05', '--json'], capture().io)).toBe(0);
  });
});

describe('mdev pktgen --pcap', () => {
  it('fails before the run, exit 2, on a path it cannot write', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pktgen-'));
    for (const [path, code] of [
      [join(dir, 'missing', 'rx.pcap'), 'ENOENT'],
      [dir, 'EISDIR'],
    ]) {
      const { io, text } = capture();
      expect(await main(['pktgen', '--count', '1000', '--pcap', path!], io)).toBe(2);
      expect(text.err).toBe(`mdev pktgen: cannot write ${path}: ${code}\n`);
      expect(text.out).toBe('');
      expect(mdevDevices()).toHaveLength(0);
    }
  });

  it.skipIf(!existsSync('/dev/full'))('reports a write that failed during the run', async () => {
    const { io, text } = capture();
    expect(await main(['pktgen', '--count', '100', '--pcap', '/dev/full'], io)).toBe(2);
    expect(text.err).toBe('mdev pktgen: cannot write /dev/full: ENOSPC\n');
    expect(mdevDevices()).toHaveLength(0);
  });

  it('stamps records in microseconds, as the header magic 0xa1b2c3d4 says', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pktgen-')), 'ts.pcap');
    const w = new PcapWriter(file, { now: () => 1_700_000_000_123.25 });
    w.write(new Uint8Array(60), 0, 60);
    w.close();
    const one = readFileSync(file);
    expect(one.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect([one.readUInt32LE(24), one.readUInt32LE(28)]).toEqual([1_700_000_000, 123_250]);

    // A real run: every stamp within the run, in order, and finer than a millisecond (2000
    // frames all on whole milliseconds is what a millisecond clock writes).
    const before = Date.now();
    const { io } = capture();
    expect(await main(['pktgen', '--count', '2000', '--pcap', file], io)).toBe(0);
    const after = Date.now();
    const bytes = readFileSync(file);
    const stamps: number[] = [];
    for (let at = 24; at < bytes.length; at += 16 + bytes.readUInt32LE(at + 8)) {
      const usec = bytes.readUInt32LE(at + 4);
      expect(usec).toBeLessThan(1e6);
      stamps.push(bytes.readUInt32LE(at) * 1e6 + usec);
    }
    expect(stamps).toHaveLength(2000);
    expect(stamps[0]).toBeGreaterThanOrEqual((before - 1) * 1000);
    expect(stamps.at(-1)).toBeLessThanOrEqual((after + 1) * 1000);
    expect(stamps.every((t, i) => i === 0 || t >= stamps[i - 1]!)).toBe(true);
    expect(stamps.some((t) => t % 1000 !== 0)).toBe(true);
  });

  it('writes to the file as frames arrive, not into a growing buffer', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pktgen-')), 'rx.pcap');
    const w = new PcapWriter(file);
    const frame = new Uint8Array(1514).fill(0xab);
    // 2 MB of records: more than one chunk is on disk before close, none of it queued.
    for (let i = 0; i < 1400; i++) w.write(frame, 0, frame.length);
    const written = statSync(file).size;
    expect(written).toBeGreaterThanOrEqual(1 << 20);
    w.close();
    expect(statSync(file).size).toBe(24 + 1400 * (16 + 1514));
    expect(() => new PcapWriter(join(file, 'x'))).toThrow(PcapError);
  });
});
