import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mdevDevices } from '@mdev/mdev-core';
import { mvnetLoopbackInit } from '@mdev/mvnet-loopback';
import { hostRam } from '@mdev/virtio';
import { netdevList } from '@mdev/virtio-net';
import { describe, expect, it } from 'vitest';
import { main } from '../cli';
import { capture } from '../testing/capture';
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
    const pcap = readFileSync(file);
    expect(pcap.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect(pcap.readUInt32LE(20)).toBe(1); // LINKTYPE_ETHERNET
    expect(pcap.length).toBe(24 + 50 * (16 + 100));
    // The first record is sequence number 0.
    expect(pcap.readUInt32BE(24 + 16 + 14)).toBe(0);
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
    expect(await main(['pktgen', '--device', 'nope'], bad.io)).toBe(1);
    expect(bad.text.err).toContain("no device 'nope'");
    expect(bad.text.err).toContain('mvnet_loopback');
    expect(bad.text.err).toContain('loopback-test');
    expect(mdevDevices()).toHaveLength(0);
  });

  it('rejects a bad frame size with a clear error', async () => {
    const { io, text } = capture();
    expect(await main(['pktgen', '--size', '20'], io)).toBe(1);
    expect(text.err).toContain('--size');
  });
});
