import { spawn } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit } from '@mdev/mdev-virtio';
import { mvnetLoopbackInit } from '@mdev/mvnet-loopback';
import { hostRam } from '@mdev/virtio';
import { describe, expect, it } from 'vitest';
import { commands, main } from './cli';
import { MVNET_TYPE_PATH } from './pktgen/run';
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

  it('rejects an unknown command with exit code 2, and the usage on stderr', async () => {
    for (const name of ['nope', 'constructor', '--bogus']) {
      const { io, text } = capture();
      expect(await main([name], io)).toBe(2);
      expect(text.err).toMatch(new RegExp(`^mdev: unknown (command|option) '${name}'`));
      expect(text.err).toContain('usage: mdev <command>');
      expect(text.out).toBe('');
    }
    const none = capture();
    expect(await main([], none.io)).toBe(2);
    expect(none.text.err).toMatch(/^mdev: no command given\nusage: mdev <command>/);
  });

  it('says where the options of each command are listed', async () => {
    const { io, text } = capture();
    expect(await main(['help'], io)).toBe(0);
    expect(text.out).toContain("'mdev help <command>' or 'mdev <command> --help'");
  });

  it("prints one command's usage with mdev help <command>, exit 2 for an unknown one", async () => {
    for (const [name, cmd] of Object.entries(commands)) {
      const { io, text } = capture();
      expect(await main(['help', name], io)).toBe(0);
      expect(text.out).toBe(cmd.usage);
      expect(text.out).toMatch(new RegExp(`^usage: mdev ${name}`));
    }
    for (const args of [
      ['help', 'nope'],
      ['help', 'pktgen', 'types'],
    ]) {
      const { io, text } = capture();
      expect(await main(args, io)).toBe(2);
      expect(text.err).toMatch(/^mdev help: (unknown command 'nope'|one command at most)\n/);
      expect(text.out).toBe('');
    }
  });

  it('installs its bin from a file in the repository, not from a build output', () => {
    // pnpm links the bin at install time, before any build: a bin in dist/ is missing then and
    // every `pnpm install` warns "Failed to create bin".
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    const bin: string = pkg.bin.mdev;
    expect(bin).toBe('./bin/mdev.js');
    expect(pkg.files).toContain('bin');
    const path = fileURLToPath(new URL(`../${bin}`, import.meta.url));
    expect(readFileSync(path, 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
    expect(() => accessSync(path, constants.X_OK)).not.toThrow();
  });

  it("prints the cli package's version with --version", async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    const { io, text } = capture();
    expect(await main(['--version'], io)).toBe(0);
    expect(text.out).toBe(`mdev ${pkg.version}\n`);
  });

  it('ends hostile option values of every command with exit 2 and a plain reason', async () => {
    for (const [args, reason] of [
      [['sysfs', ''], 'PATH must be absolute'],
      [['sysfs', 'bus/mdev'], 'PATH must be absolute'],
      [['screenshot', '--type', 'mdpy-vga'], 'one OUT.png file is required'],
      [['screenshot', 'x.png'], '--type TYPE is required'],
      [['screenshot', '--type', 'mdpy-vga', ''], 'OUT.png needs a file name'],
      [['screenshot', '--type', '', 'x.png'], 'unknown type ""'],
      [['screenshot', '--type', 'mbochs-small', '--mode=-1x5', 'x.png'], '--mode must look'],
      [['screenshot', '--type', 'mbochs-small', '--mode', '99999x99999', 'x.png'], '800x600'],
      [['screenshot', '--type', 'mbochs-small', '--mode', '801x600', 'x.png'], '800x600'],
      [['screenshot', '--type', 'mbochs-large', '--mode', '4095x4095', 'x.png'], 'pixel clock'],
      [
        ['screenshot', '--type', 'mdpy-hd', '--mode', '800x600', 'x.png'],
        'mdpy has the mode of its type',
      ],
      [['screenshot', '--type', 'mdpy-vga', '--uuid', 'bad', 'x.png'], '--uuid must be a UUID'],
      [['lspci', '--type', ''], 'no mdev type ""'],
      [['lspci', '--type', 'mtty-1', '--type', 'nope'], 'no mdev type "nope"'],
      [['tty', '--baud', '7'], '--baud must be 115200 divided by a whole number'],
      [['tty', '--baud', ''], '--baud must be an integer'],
      [['tty', '--baud', '1e3'], '--baud must be an integer'],
      [['tty', '--baud', '230400'], '--baud must be an integer from 1 to 115200'],
      [['tty', '--port=-1'], '--port must be an integer from 0 to 1'],
      [['tty', '--port', '99999999999999999999'], '--port must be an integer from 0 to 1'],
      [['tty', '--port', '1', '--text', 'x'], '--port 1: mtty-1 card'],
      [['tty', '--type', 'mtty-3'], '--type must be mtty-1 or mtty-2'],
      [['tty', '--uuid', 'x'], '--uuid must be a UUID'],
      [['tty', '--text'], "Option '--text <value>' argument missing"],
      [['pktgen', '--pcap='], '--pcap needs a file name'],
      [['pktgen', '--count', '0'], '--count must be an integer >= 1'],
      [['pktgen', '--count', '99999999999999999999'], '--count must be an integer >= 1'],
      [['pktgen', '--burst', ' 8'], '--burst must be an integer >= 1'],
      [['pktgen', '--duration', '-1'], "Option '--duration' argument is ambiguous"],
      [['pktgen', '--duration', 'Infinity'], '--duration must be a positive number'],
      [['pktgen', '--size', '59'], '--size must be an integer from 60 to 1514'],
      [['pktgen', '--queue-size', '3'], '--queue-size must be a power of two'],
      [['pktgen', '--device', ''], "no device '' (known: mvnet_loopback)"],
      [['pktgen', 'extra'], "Unexpected argument 'extra'"],
      [['types', '--json=yes'], "Option '--json' does not take an argument"],
    ] as const) {
      const { io, text } = capture();
      const code = await main([...args], io);
      const first = text.err.split('\n')[0];
      expect({ args, code, first }).toEqual({
        args,
        code: 2,
        first: expect.stringContaining(reason),
      });
      expect(first).toMatch(new RegExp(`^mdev ${args[0]}: `));
      expect(text.err).not.toMatch(/TypeError|RangeError|Error:|ERR_/);
      expect(text.out).toBe('');
    }
    expect(mdevDevices()).toHaveLength(0);
    expect(sysfs.exists('/sys/class/mtty')).toBe(false);
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
  it('shows the available instances of a freshly loaded parent: it creates no mdev', async () => {
    const mvnet = mvnetLoopbackInit({ memory: hostRam.memory, dma: hostRam.dma });
    const fresh = sysfs.read(`${MVNET_TYPE_PATH}/available_instances`).trimEnd();
    mvnet.exit();
    mdevVirtioExit();
    const { io, text } = capture();
    expect(await main(['types', '--json'], io)).toBe(0);
    const types = JSON.parse(text.out) as { parent: string; attrs: Record<string, string> }[];
    const listed = types.find((t) => t.parent === 'mvnet_loopback')?.attrs.available_instances;
    expect({ listed, fresh }).toEqual({ listed: '64', fresh: '64' });
    expect(mdevDevices()).toHaveLength(0);
  });

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
    // `..` and trailing slashes resolve as in a shell.
    const up = capture();
    expect(await main(['sysfs', '/sys/bus/mdev_virtio/devices/../'], up.io)).toBe(0);
    expect(up.text.out.split('\n')[0]).toBe('/sys/bus/mdev_virtio/');
    expect(up.text.err).toBe('');
    const bad = capture();
    expect(await main(['sysfs', '/sys/nope'], bad.io)).toBe(1);
    expect(bad.text.err).toContain('no such file');
  });
});
