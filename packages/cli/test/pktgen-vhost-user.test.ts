// `mdev pktgen --vhost-user`: our virtio-net driver on the virtio-user transport against a
// vhost-user backend in another process, DPDK's net_vhost in testpmd and our own
// `mdev vhost-user`, with every check pktgen makes. Each peer is bounded in time.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeWithPeers, startTestpmd, vhostBackend } from '@mdev/test-peers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mdev } from '../src/testing/host';
import { serveIn, until } from './served';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mdev-pktgen-vhost-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The JSON line a `--json` run printed. */
function figures(out: string): Record<string, number | string | boolean> {
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`no JSON line in: ${out}`);
  return JSON.parse(line);
}

describe('mdev pktgen --vhost-user: the command line', () => {
  it('refuses options about a device of this process, and --server alone', async () => {
    for (const args of [
      ['--server'],
      ['--vhost-user', 'x.sock', '--offload'],
      ['--vhost-user', 'x.sock', '--device', 'mvnet_loopback'],
      ['--vhost-user', 'x.sock', '-u', '0b7a1c5e-9f2d-4e8b-a6c3-1d2e3f4a5b6c'],
      ['--vhost-user', ''],
    ]) {
      const r = await mdev(['pktgen', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(/--vhost-user|--server/);
    }
  });

  it('a socket nobody serves: exit 1 with the path, nothing sent', async () => {
    const path = join(dir, 'nobody.sock');
    const r = await mdev(['pktgen', '--vhost-user', path, '--count', '10']);
    expect(r.code).toBe(1);
    expect(r.err).toContain(path);
    expect(r.out).toBe('');
  });
});

describeWithPeers(['testpmd'], "mdev pktgen --vhost-user with DPDK's net_vhost (testpmd)", () => {
  for (const ring of ['split', 'packed'] as const) {
    it(`io forwarding: every frame back in order, verified, none lost; testpmd counts the same (${ring} rings)`, async () => {
      const path = join(dir, `dpdk-${ring}.sock`);
      const pmd = await startTestpmd({ vdevs: [vhostBackend(path)], args: ['--forward-mode=io'] });
      let r: Awaited<ReturnType<typeof mdev>>;
      try {
        r = await mdev([
          'pktgen',
          '--vhost-user',
          path,
          '--ring',
          ring,
          '--count',
          '200000',
          '--json',
        ]);
      } finally {
        await pmd.stop();
      }
      const out = figures(r.out);
      expect(r.code, r.err).toBe(0);
      expect(out).toMatchObject({ mode: 'vhost-user', ring, tx: 200_000, rx: 200_000, lost: 0 });
      expect(out).toMatchObject({ corrupted: 0, reordered: 0, via: `vhost-user ${path}` });
      // testpmd also forwarded the probes that showed the path was live (at least the one that
      // came back; those before its forwarding started it dropped uncounted), and sent back all.
      const probes = out.probes as number;
      const port = (await pmd.stop()).ports[0]!;
      expect(port.rxPackets).toBeGreaterThanOrEqual(200_000 + 1);
      expect(port.rxPackets).toBeLessThanOrEqual(200_000 + probes);
      expect(port).toMatchObject({ txPackets: port.rxPackets, txDropped: 0 });
    }, 120_000);
  }

  it('with --server, a testpmd in client mode connects to pktgen', async () => {
    const path = join(dir, 'listen.sock');
    const run = mdev(['pktgen', '--vhost-user', path, '--server', '--count', '50000', '--json']);
    expect(await until(() => existsSync(path), 10_000)).toBe(true);
    const pmd = await startTestpmd({
      vdevs: [vhostBackend(path, { client: true })],
      args: ['--forward-mode=io'],
    });
    try {
      const r = await run;
      expect(r.code, r.err).toBe(0);
      expect(figures(r.out)).toMatchObject({ tx: 50_000, rx: 50_000, lost: 0, corrupted: 0 });
    } finally {
      await pmd.stop();
    }
  }, 120_000);
});

describe('mdev pktgen --vhost-user with mdev vhost-user in another process', () => {
  for (const offload of [false, true]) {
    it(`every frame back through mvnet_loopback (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
      const served = await serveIn(dir, `ours-${offload}`, offload ? ['--offload'] : []);
      try {
        const r = await mdev([
          'pktgen',
          '--vhost-user',
          served.socket,
          '--count',
          '100000',
          '--json',
        ]);
        expect(r.code, r.err).toBe(0);
        expect(figures(r.out)).toMatchObject({ tx: 100_000, rx: 100_000, lost: 0, corrupted: 0 });
        const { counters, code } = await served.stop();
        expect(code).toBe(0);
        const probes = figures(r.out).probes as number;
        expect(probes).toBeGreaterThanOrEqual(1);
        expect(counters).toMatchObject({
          tx_packets: 100_000 + probes,
          rx_packets: 100_000 + probes,
          tx_dropped: 0,
        });
      } finally {
        await served.proc.kill();
      }
    }, 120_000);
  }

  it('a backend killed mid-run ends the run with the reason and the counts; the next one serves', async () => {
    const served = await serveIn(dir, 'killed');
    try {
      const run = mdev(['pktgen', '--vhost-user', served.socket, '--count', '100000000', '--json']);
      // Once frames flow, the backend goes (a crash: no goodbye).
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await served.proc.stop('SIGKILL');
      const r = await run;
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/the device went away after \d+ frames: the backend hung up/);
      const out = figures(r.out);
      expect(out.gone).toBe('the backend hung up');
      expect(out.tx).toBeGreaterThan(0);
      expect(out.rx).toBeGreaterThan(0);
      expect(out.corrupted).toBe(0);
      expect(out.reordered).toBe(0);
    } finally {
      await served.proc.kill();
    }
    // A backend on the same path again (the stale socket file is replaced) is served.
    const again = await serveIn(dir, 'killed');
    try {
      const r = await mdev(['pktgen', '--vhost-user', again.socket, '--count', '20000', '--json']);
      expect(r.code, r.err).toBe(0);
      expect(figures(r.out)).toMatchObject({ tx: 20_000, rx: 20_000, lost: 0 });
    } finally {
      await again.proc.kill();
    }
  }, 120_000);
});
