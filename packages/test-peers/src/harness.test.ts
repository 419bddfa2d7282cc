import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isMissing, isStaticElf, kernelDir, peer, peersRequired, requirePeer } from './peers';
import { PeerProcess } from './process';
import { consoleText, parseGuestStats, parseQemuErrors, qemuArgs } from './qemu';
import {
  negotiatedFeatures,
  parseForwardStats,
  parseNicStats,
  testpmdArgs,
  vhostBackend,
  virtioUserFrontend,
} from './testpmd';

const scratch = mkdtempSync(join(tmpdir(), 'mdev-harness-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** True while a process with this pid exists (a zombie counts: it still holds its entry). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

describe('PeerProcess', () => {
  it('kills a process that outlives its deadline and says so', async () => {
    const p = new PeerProcess('sleep', ['30'], { timeoutMs: 100 });
    const exit = await p.exited;
    expect(exit).toEqual({ code: null, signal: 'SIGTERM', timedOut: true });
    expect(alive(p.pid!)).toBe(false);
  });

  it('SIGKILLs a process that ignores the stop signal, after the grace period', async () => {
    // The ignored disposition of SIGINT survives the exec into sleep.
    const p = new PeerProcess('sh', ['-c', 'trap "" INT; echo ready; exec sleep 30'], {
      timeoutMs: 30_000,
      stopSignal: 'SIGINT',
      graceMs: 200,
    });
    await p.waitFor(/ready/, 5000);
    const exit = await p.stop();
    expect(exit).toEqual({ code: null, signal: 'SIGKILL', timedOut: false });
    expect(alive(p.pid!)).toBe(false);
    // Stopping again answers the same exit.
    expect(await p.stop()).toBe(exit);
  });

  it('waitFor matches the output, and rejects with the tail when the process exits first', async () => {
    const p = new PeerProcess('sh', ['-c', 'echo one; echo two >&2; echo ports=3; exit 7'], {
      timeoutMs: 5000,
    });
    expect((await p.waitFor(/ports=(\d+)/, 5000))[1]).toBe('3');
    await expect(p.waitFor(/never/, 5000)).rejects.toThrow(/exited \(code 7\)[\s\S]*two/);
    expect(p.output).toContain('one\n');
  });

  it('waitFor rejects when the time passes, without ending the process', async () => {
    const p = new PeerProcess('sleep', ['30'], { timeoutMs: 30_000 });
    try {
      await expect(p.waitFor(/never/, 50)).rejects.toThrow(/printed no \/never\/ within 50 ms/);
      expect(p.exit).toBeUndefined();
    } finally {
      await p.stop();
    }
  });

  it('a command that cannot be spawned ends as an exit, not an unhandled error', async () => {
    const p = new PeerProcess(join(scratch, 'no-such-program'), [], { timeoutMs: 5000 });
    expect(await p.exited).toEqual({ code: null, signal: null, timedOut: false });
    expect(p.output).toMatch(/ENOENT/);
  });
});

describe('peer lookup', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of ['MDEV_TESTPMD', 'MDEV_QEMU', 'MDEV_BUSYBOX', 'MDEV_KERNEL_DIR', 'CI']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  it('an override that is not executable is missing, with the reason', () => {
    process.env.MDEV_TESTPMD = join(scratch, 'nothing-here');
    const p = peer('testpmd');
    expect(isMissing(p) && p.reason).toMatch(/MDEV_TESTPMD=.*nothing-here is not an executable/);
    expect(() => requirePeer('testpmd')).toThrow(/^testpmd: MDEV_TESTPMD=/);
    const exe = join(scratch, 'fake-qemu');
    writeFileSync(exe, '#!/bin/sh\n');
    chmodSync(exe, 0o755);
    process.env.MDEV_QEMU = exe;
    expect(peer('qemu')).toEqual({ name: 'qemu', path: exe });
  });

  it('busybox must be statically linked: a dynamic ELF is refused', () => {
    // node itself is a dynamically linked ELF file.
    expect(isStaticElf(process.execPath)).toBe(false);
    process.env.MDEV_BUSYBOX = process.execPath;
    const p = peer('busybox');
    expect(isMissing(p) && p.reason).toMatch(/not statically linked.*busybox-static/);
    const text = join(scratch, 'text');
    writeFileSync(text, 'not an ELF file at all, longer than an ELF header is: 64 bytes.....');
    expect(isStaticElf(text)).toBeUndefined();
  });

  it('the kernel is the newest vmlinuz-* under MDEV_KERNEL_DIR that has its modules', () => {
    const root = join(scratch, 'kernel');
    process.env.MDEV_KERNEL_DIR = root;
    expect(kernelDir()).toBe(root);
    let p = peer('kernel');
    expect(isMissing(p) && p.reason).toMatch(/no vmlinuz-\* in .*kernel\/boot/);
    mkdirSync(join(root, 'boot'), { recursive: true });
    for (const r of ['6.1.0-9-amd64', '6.1.0-57-amd64', '6.1.0-60-amd64']) {
      writeFileSync(join(root, 'boot', `vmlinuz-${r}`), '');
    }
    p = peer('kernel');
    expect(isMissing(p) && p.reason).toMatch(/no modules for 6\.1\.0-60-amd64, 6\.1\.0-57/);
    // 60 has no modules; of the two that do, 57 is newer than 9 (numerically, not as text).
    mkdirSync(join(root, 'lib/modules/6.1.0-9-amd64/kernel'), { recursive: true });
    mkdirSync(join(root, 'usr/lib/modules/6.1.0-57-amd64/kernel'), { recursive: true });
    expect(peer('kernel')).toEqual({
      name: 'kernel',
      path: join(root, 'boot/vmlinuz-6.1.0-57-amd64'),
      modules: join(root, 'usr/lib/modules/6.1.0-57-amd64'),
      release: '6.1.0-57-amd64',
    });
  });

  it('CI=true makes peers required; unset, empty, 0 and false do not', () => {
    for (const [v, want] of [
      ['true', true],
      ['1', true],
      ['', false],
      ['0', false],
      ['false', false],
      [undefined, false],
    ] as const) {
      if (v === undefined) delete process.env.CI;
      else process.env.CI = v;
      expect(peersRequired(), `CI=${v}`).toBe(want);
    }
  });
});

describe('command lines and output parsing', () => {
  it('testpmd: no hugepages, no PCI, a unique file prefix, pinned lcores, vdevs', () => {
    const args = testpmdArgs(
      {
        vdevs: [vhostBackend('/tmp/a.sock'), virtioUserFrontend('/tmp/b.sock', { packed: true })],
        lcores: '0@0,1@0',
        args: ['--forward-mode=io'],
      },
      'pfx',
    );
    expect(args).toEqual([
      '--no-huge',
      '-m',
      '1024',
      '--no-pci',
      '--no-shconf',
      '--no-telemetry',
      '--file-prefix=pfx',
      '--lcores',
      '0@0,1@0',
      '--vdev',
      'net_vhost0,iface=/tmp/a.sock,queues=1',
      '--vdev',
      'net_virtio_user0,path=/tmp/b.sock,queues=1,packed_vq=1',
      '--',
      '--total-num-mbufs=16384',
      '--stats-period=1',
      '--forward-mode=io',
    ]);
  });

  it('testpmd: per-port totals and the last NIC statistics, the accumulated block ignored', () => {
    const out = [
      '\x1b[2J\x1b[1;1H',
      'Port statistics ====================================',
      '  ######################## NIC statistics for port 0  ########################',
      '  RX-packets: 0          RX-missed: 0          RX-bytes:  0',
      '  RX-errors: 0',
      '  RX-nombuf:  0         ',
      '  TX-packets: 256        TX-errors: 0          TX-bytes:  15360',
      '  ######################## NIC statistics for port 0  ########################',
      '  RX-packets: 453920     RX-missed: 2          RX-bytes:  27235200',
      '  RX-errors: 0',
      '  RX-nombuf:  0         ',
      '  TX-packets: 454688     TX-errors: 0          TX-bytes:  27281280',
      'Telling cores to stop...',
      '  ---------------------- Forward statistics for port 1  ----------------------',
      '  RX-packets: 7              RX-dropped: 0             RX-total: 7',
      '  TX-packets: 5              TX-dropped: 1             TX-total: 6',
      '  ----------------------------------------------------------------------------',
      '  ---------------------- Forward statistics for port 0  ----------------------',
      '  RX-packets: 453920         RX-dropped: 0             RX-total: 453920',
      '  TX-packets: 454688         TX-dropped: 8613344       TX-total: 9068032',
      '  ----------------------------------------------------------------------------',
      '  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++',
      '  RX-packets: 453927         RX-dropped: 0             RX-total: 453927',
      '  TX-packets: 454693         TX-dropped: 8613345       TX-total: 9068038',
    ].join('\n');
    expect(parseForwardStats(out)).toEqual([
      { port: 0, rxPackets: 453920, rxDropped: 0, txPackets: 454688, txDropped: 8613344 },
      { port: 1, rxPackets: 7, rxDropped: 0, txPackets: 5, txDropped: 1 },
    ]);
    expect(parseNicStats(out)).toEqual([
      {
        port: 0,
        rxPackets: 453920,
        rxMissed: 2,
        rxBytes: 27235200,
        txPackets: 454688,
        txErrors: 0,
        txBytes: 27281280,
      },
    ]);
    expect(parseForwardStats('no statistics')).toEqual([]);
    const log =
      'VHOST_CONFIG: (/tmp/a.sock) negotiated Virtio features: 0x150208182\n' +
      'VHOST_CONFIG: (/tmp/a.sock) negotiated Virtio features: 0x57020e783\n';
    expect(negotiatedFeatures(log)).toBe(0x57020e783n);
    expect(negotiatedFeatures('')).toBeUndefined();
  });

  it('qemu: memfd shared memory, a vhost-user netdev, no MSI-X; the socket path escaped', () => {
    const args = qemuArgs({ socket: '/tmp/a,b.sock', kernel: 'k', initrd: 'i', packed: true });
    const joined = args.join(' ');
    expect(joined).toContain('-object memory-backend-memfd,id=mem,size=512M,share=on');
    expect(joined).toContain('-numa node,memdev=mem');
    expect(joined).toContain('-chardev socket,id=c0,path=/tmp/a,,b.sock');
    expect(joined).toContain('-netdev vhost-user,id=n0,chardev=c0');
    expect(joined).toContain('-device virtio-net-pci,netdev=n0,vectors=0,romfile=,packed=on');
    expect(joined).toContain('-append console=ttyS0 panic=-1 quiet');
  });

  it('guest console: escapes and carriage returns removed, the counters parsed', () => {
    const raw =
      '\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\n\x1bc\x1b[?7l\x1b[2Jmdev-guest: [4.4] init\r\n' +
      'MDEV-GUEST-STATS rx_packets=20 tx_packets=21 rx_bytes=840 tx_bytes=882 rx_dropped=0 ' +
      'tx_dropped=3\r\n';
    const log = consoleText(raw);
    expect(log.split('\n')[1]).toBe('mdev-guest: [4.4] init');
    expect(parseGuestStats(log)).toEqual({
      rxPackets: 20,
      txPackets: 21,
      rxBytes: 840,
      txBytes: 882,
      rxDropped: 0,
      txDropped: 3,
    });
    expect(parseGuestStats('mdev-guest: no eth0')).toBeUndefined();
    // What QEMU printed when its vhost-user backend went away during a boot.
    const lost = consoleText(
      'Booting from ROM...\r\nqemu-system-x86_64: Unexpected end-of-file before all data were ' +
        'read\r\nmdev-guest: [3.42] init\r\nqemu-system-x86_64: Failed to set msg fds.\r\n',
    );
    expect(parseQemuErrors(lost)).toEqual([
      'Unexpected end-of-file before all data were read',
      'Failed to set msg fds.',
    ]);
    expect(parseQemuErrors(log)).toEqual([]);
    expect(() => parseGuestStats('MDEV-GUEST-STATS rx_packets=1')).toThrow(/without tx_packets/);
  });
});
