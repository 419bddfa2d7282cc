import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import { describe, expect, it } from 'vitest';
import { main } from './cli';
import { capture } from './testing/capture';

describe('mdev', () => {
  it('runs the documented create/remove flow through sysfs', async () => {
    const { io, text } = capture();
    expect(await main(['demo'], io)).toBe(0);
    const lines = text.out.split('\n');
    expect(lines).toContain('sample-1');
    expect(lines).toContain('Sample device');
    const uuid = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
    // available_instances drops by one while the mdev exists.
    expect(lines.filter((l) => /^\d+$/.test(l))).toEqual(['4', '3']);
    const listings = lines.filter((_, i) => lines[i - 1] === '# ls /sys/bus/mdev/devices');
    expect(listings).toEqual([uuid, '']);
    expect(text.out).toContain('/mdev_supported_types/sample-1\n');
  });

  it('rejects an unknown command with exit code 2', async () => {
    const { io, text } = capture();
    expect(await main(['nope'], io)).toBe(2);
    expect(text.err).toContain("unknown command 'nope'");
  });

  it('says where the options of each command are listed', async () => {
    const { io, text } = capture();
    expect(await main(['help'], io)).toBe(0);
    expect(text.out).toContain("'mdev <command> --help' lists the command's options.");
  });

  it('rejects arguments a command does not take with exit code 2 and its usage', async () => {
    for (const [args, message] of [
      [['types', '--bogus'], "mdev types: Unknown option '--bogus'"],
      [['types', 'extra'], "mdev types: Unexpected argument 'extra'"],
      [['sysfs', '/sys', '/sys/bus'], 'mdev sysfs: one PATH at most'],
      [['sysfs', '--bogus'], "mdev sysfs: Unknown option '--bogus'"],
      [['demo', 'extra'], "mdev demo: Unexpected argument 'extra'"],
      [['demo', '--bogus'], "mdev demo: Unknown option '--bogus'"],
      // A parseArgs error a command leaves to the dispatcher: a usage error, not exit 1.
      [['screenshot', '--bogus'], "mdev screenshot: Unknown option '--bogus'"],
    ] as const) {
      const { io, text } = capture();
      expect({ args, code: await main([...args], io) }).toEqual({ args, code: 2 });
      expect(text.err.slice(0, message.length)).toBe(message);
      expect(text.err).toContain(`usage: mdev ${args[0]}`);
      expect(text.err).not.toMatch(/TypeError|ERR_PARSE_ARGS/);
      expect(text.out).toBe('');
    }
    expect(mdevDevices()).toHaveLength(0);
  });

  it('exits quietly with status 0 when the reader of stdout goes away (| head)', async () => {
    const cwd = fileURLToPath(new URL('..', import.meta.url));
    const child = spawn(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', 'src/main.ts', 'sysfs'],
      { cwd, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // Closed before the program writes anything: its first write gets EPIPE.
    child.stdout.destroy();
    let err = '';
    child.stderr.on('data', (b) => (err += b));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect({ code, err }).toEqual({ code: 0, err: '' });
  }, 60_000);
});

describe('mdev types and mdev sysfs', () => {
  it('lists the mvnet_loopback type with its attributes', async () => {
    const { io, text } = capture();
    expect(await main(['types'], io)).toBe(0);
    expect(text.out).toContain('mvnet_loopback\n  mvnet_loopback-virtio\n');
    expect(text.out).toContain('    Device API: virtio-mdev\n');
    expect(text.out).toContain('    Name: virtio-net\n');
  });

  it('lists the VFIO samples too, and unloads them again', async () => {
    const { io, text } = capture();
    expect(await main(['types', '--json'], io)).toBe(0);
    const types = JSON.parse(text.out) as { parent: string; type: string }[];
    expect(new Set(types.map((t) => t.parent))).toEqual(
      new Set(['mvnet_loopback', 'mtty', 'mdpy', 'mbochs']),
    );
    expect(types.map((t) => t.type)).toEqual(
      expect.arrayContaining(['mtty-1', 'mtty-2', 'mdpy-xga', 'mbochs-small']),
    );
    expect(mdevDevices()).toHaveLength(0);
    expect(sysfs.exists('/sys/class/mtty')).toBe(false);
    expect(sysfs.exists('/sys/bus/mdev')).toBe(false);
    expect(sysfs.exists('/sys/class/mvnet_loopback')).toBe(false);
  });

  it('prints the tree after setup, with virtio0 under the mdev', async () => {
    const { io, text } = capture();
    expect(await main(['sysfs', '/sys/bus/mdev_virtio'], io)).toBe(0);
    expect(text.out).toMatch(
      /\/sys\/bus\/mdev_virtio\/devices\/[0-9a-f-]{36} -> \/sys\/devices\/virtual\/mvnet_loopback\/mvnet_loopback\/[0-9a-f-]{36}\n/,
    );
    expect(text.out).toContain('/sys/bus/mdev_virtio/drivers/virtio_mdev/');
    const bad = capture();
    expect(await main(['sysfs', '/sys/nope'], bad.io)).toBe(1);
    expect(bad.text.err).toContain('no such file');
  });
});
