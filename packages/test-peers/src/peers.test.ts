/**
 * The harness against DPDK's own vhost-user backend (testpmd's net_vhost), with a Linux guest
 * and with testpmd's virtio-user as frontends: what a backend of ours is later held to.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { readCpio } from './cpio';
import { buildInitramfs, VIRTIO_NET_MODULES } from './initramfs';
import { runLinuxGuest } from './qemu';
import {
  negotiatedFeatures,
  startTestpmd,
  type Testpmd,
  vhostBackend,
  virtioUserFrontend,
} from './testpmd';
import { describeWithPeers } from './vitest';

const dir = mkdtempSync(join(tmpdir(), 'mdev-peers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Where the backend sits: CPU 1 when there are two (testpmd's lcores both on it). */
const BACKEND_LCORES = '0@1,1@1';
const FRONTEND_LCORES = '0@0,1@0';

/** Runs `fn` with testpmd as the vhost-user backend on `socket` (io forwarding), then stops it. */
async function withVhostBackend<T>(socket: string, fn: (pmd: Testpmd) => Promise<T>) {
  const pmd = await startTestpmd({
    vdevs: [vhostBackend(socket)],
    lcores: BACKEND_LCORES,
    args: ['--forward-mode=io'],
    timeoutMs: 120_000,
  });
  try {
    const value = await fn(pmd);
    return { value, backend: await pmd.stop() };
  } finally {
    await pmd.stop();
  }
}

describeWithPeers(['kernel', 'busybox'], 'the guest initramfs from the real kernel', () => {
  it('holds the eight modules, each an ELF object', () => {
    const entries = readCpio(buildInitramfs());
    for (const m of VIRTIO_NET_MODULES) {
      const e = entries.find((x) => x.name === `lib/modules/${m}.ko`);
      expect(e, m).toBeDefined();
      expect(Buffer.from(e!.data!.subarray(0, 4)).toString('latin1'), m).toBe('\x7fELF');
    }
  });
});

describeWithPeers(
  ['testpmd', 'qemu', 'kernel', 'busybox'],
  'testpmd net_vhost and a Linux guest',
  () => {
    // VIRTIO_F_RING_PACKED (virtio 1.1, 6 Reserved Feature Bits): what packed=on offers.
    it.each([
      { ring: 'split', packed: false },
      { ring: 'packed', packed: true },
    ])(
      '$ring ring: the guest sends 20 ARP requests; io forwarding returns each on the same port',
      async ({ ring, packed }) => {
        const socket = join(dir, `guest-${ring}.sock`);
        const { value: guest, backend } = await withVhostBackend(socket, () =>
          runLinuxGuest({ socket, timeoutMs: 100_000, packed }),
        );
        process.stderr.write(
          `[test-peers] ${ring} guest ran ${(guest.durationMs / 1000).toFixed(1)} s: ` +
            `${JSON.stringify(guest.stats)}; ${guest.events.join(', ')}` +
            `${guest.qemuErrors.length > 0 ? `; qemu: ${guest.qemuErrors.join(' | ')}` : ''}\n`,
        );
        expect(guest.events.some((e) => e.includes('eth0 up'))).toBe(true);
        // QEMU kept its vhost-user connection (a lost one leaves the guest's link down).
        expect(guest.qemuErrors).toEqual([]);
        // With IPv6 off on eth0, the ARP requests are all the guest sends: 10 arpings of 2.
        expect(guest.stats.txPackets).toBe(20);
        // 42 bytes each: an Ethernet header and an ARP packet, no padding on virtio.
        expect(guest.stats.txBytes).toBe(20 * 42);
        // Each came back: io forwarding with one port sends what it receives out of that port.
        expect(guest.stats.rxPackets).toBe(20);
        expect(guest.stats.rxBytes).toBe(20 * 42);
        const port = backend.ports[0]!;
        expect(port).toMatchObject({ rxPackets: 20, txPackets: 20, txDropped: 0 });
        expect(guest.exit).toMatchObject({ code: 0, timedOut: false });
        const features = negotiatedFeatures(backend.log);
        expect(features).toBeDefined();
        expect((features! >> 34n) & 1n).toBe(packed ? 1n : 0n);
      },
      150_000,
    );
  },
);

describeWithPeers(['qemu', 'kernel', 'busybox'], 'a Linux guest, bounded', () => {
  it('a backend that never answers: QEMU is killed at the deadline and the run throws', async () => {
    // A listener that accepts and stays silent: QEMU waits on its first vhost-user reply.
    const socket = join(dir, 'silent.sock');
    const held: Socket[] = [];
    const server = createServer((s) => held.push(s));
    await new Promise<void>((r) => server.listen(socket, r));
    let pid: number | undefined;
    try {
      await expect(
        runLinuxGuest({ socket, timeoutMs: 3000, onStart: (q) => (pid = q.pid) }),
      ).rejects.toThrow(/ran past its 3000 ms without printing the guest's counters/);
      expect(held.length).toBe(1);
      expect(() => process.kill(pid!, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => server.close(r));
    }
  }, 30_000);
});

describeWithPeers(['testpmd'], 'testpmd virtio-user against testpmd net_vhost', () => {
  it('flowgen frames go out, come back through io forwarding, and are counted on both sides', async () => {
    const socket = join(dir, 'pmd.sock');
    const ring = 256;
    const { value: frontend, backend } = await withVhostBackend(socket, async () => {
      const fe = await startTestpmd({
        vdevs: [virtioUserFrontend(socket)],
        lcores: FRONTEND_LCORES,
        args: ['--forward-mode=flowgen', `--txd=${ring}`, `--rxd=${ring}`],
        timeoutMs: 60_000,
      });
      try {
        // Frames that went around: the frontend received what the backend sent back.
        await fe.waitForPackets(0, { rx: 10_000 }, 30_000);
      } finally {
        await fe.stop();
      }
      // The EAL runtime directory of its file prefix is gone with it.
      const runtime = ['/var/run/dpdk', join(tmpdir(), 'dpdk')].map((b) => join(b, fe.filePrefix));
      expect(runtime.filter((d) => existsSync(d))).toEqual([]);
      return fe.stop();
    });
    const fe = frontend.ports[0]!;
    const be = backend.ports[0]!;
    process.stderr.write(
      `[test-peers] virtio-user ${JSON.stringify(fe)}; vhost ${JSON.stringify(be)}\n`,
    );
    expect(fe.rxPackets).toBeGreaterThanOrEqual(10_000);
    expect(be.rxPackets).toBeGreaterThanOrEqual(fe.rxPackets);
    // What one side sent and the other received differ at most by a ring's worth still in
    // flight when the frontend stopped.
    expect(fe.txPackets - be.rxPackets).toBeGreaterThanOrEqual(0);
    expect(fe.txPackets - be.rxPackets).toBeLessThanOrEqual(ring);
    expect(be.txPackets - fe.rxPackets).toBeGreaterThanOrEqual(0);
    expect(be.txPackets - fe.rxPackets).toBeLessThanOrEqual(ring);
    expect(frontend.exit).toMatchObject({ code: 0, timedOut: false });
    expect(backend.exit).toMatchObject({ code: 0, timedOut: false });
  }, 90_000);

  it('virtio-user with no backend on the socket: start fails, nothing left', async () => {
    const err = await startTestpmd({
      vdevs: [virtioUserFrontend(join(dir, 'nobody.sock'))],
      lcores: FRONTEND_LCORES,
    }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      /did not start: "(probe failed|No probed ethernet devices)"/,
    );
    expect((err as Error).message).toMatch(/Failed to setup backend|connect error/);
    const pid = Number(/\(pid (\d+)\)/.exec((err as Error).message)?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
  }, 30_000);
});
