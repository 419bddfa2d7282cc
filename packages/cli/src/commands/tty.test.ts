import { PassThrough, Readable } from 'node:stream';
import { sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import { mdevVfioExit, vfioDeviceOpen, vfioPciIndexToOffset } from '@mdev/mdev-vfio';
import {
  mttyInit,
  UART_DLL,
  UART_DLM,
  UART_IER,
  UART_LCR,
  UART_LCR_DLAB,
} from '@mdev/samples-legacy';
import { describe, expect, it } from 'vitest';
import { main } from '../cli';

function capture(stdin?: NodeJS.ReadableStream) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const text = { out: Buffer.alloc(0), err: '' };
  stdout.on('data', (b: Buffer) => (text.out = Buffer.concat([text.out, b])));
  stderr.on('data', (b) => (text.err += b));
  return { io: { stdout, stderr, stdin }, text };
}

function stats(err: string): Record<string, number> {
  const m = /tty: sent (\d+) received (\d+) interrupts (\d+) overruns (\d+) polled (\d+)/.exec(err);
  expect(m).not.toBeNull();
  const [, sent, received, interrupts, overruns, polled] = m!.map(Number);
  return {
    sent: sent!,
    received: received!,
    interrupts: interrupts!,
    overruns: overruns!,
    polled: polled!,
  };
}

describe('mdev tty from a script', () => {
  it('sends stdin through the UART and writes the loopback echo to stdout, ending at EOF', async () => {
    const input = ['hello\n', 'a second chunk, longer than the sixteen-byte FIFO\n'];
    const { io, text } = capture(Readable.from(input.map((s) => Buffer.from(s))));
    expect(await main(['tty', '--verbose'], io)).toBe(0);
    expect(text.out.toString()).toBe(input.join(''));
    const s = stats(text.err);
    const n = input.join('').length;
    // Every byte came back through a delivered interrupt: none polled, none lost.
    expect(s).toEqual({ sent: n, received: n, interrupts: n, overruns: 0, polled: 0 });
    expect(mdevDevices()).toEqual([]);
    expect(sysfs.exists('/sys/class/mtty')).toBe(false);
  });

  it('is 8-bit clean over MSI on the second port of mtty-2', async () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const { io, text } = capture(Readable.from([all]));
    expect(await main(['tty', '--type', 'mtty-2', '--port', '1', '--msi', '-v'], io)).toBe(0);
    expect(text.out.equals(all)).toBe(true);
    expect(stats(text.err)).toMatchObject({ sent: 256, received: 256, overruns: 0, polled: 0 });
    expect(stats(text.err).interrupts).toBeGreaterThan(0);
  });

  it('sends --text without reading stdin', async () => {
    const { io, text } = capture();
    expect(await main(['tty', '--text', 'abc'], io)).toBe(0);
    expect(text.out.toString()).toBe('abc');
  });

  it('programs an existing port like a guest: divisor for the baud rate, 8N1, then quiesces it', async () => {
    const mtty = mttyInit();
    try {
      const uuid = '0b0b0b0b-0000-4000-8000-000000000001';
      sysfs.write(`${mtty.path}/mdev_supported_types/mtty-1/create`, uuid);
      const { io, text } = capture();
      expect(await main(['tty', '--uuid', uuid, '--baud', '9600', '--text', 'x'], io)).toBe(0);
      expect(text.out.toString()).toBe('x');
      const dev = vfioDeviceOpen(uuid);
      const port = vfioPciIndexToOffset(0);
      expect(dev.readU8(port + UART_LCR)).toBe(0x03); // 8 data bits, no parity, 1 stop bit
      expect(dev.readU8(port + UART_IER)).toBe(0); // interrupts off again after the session
      dev.writeU8(port + UART_LCR, UART_LCR_DLAB | 0x03);
      expect(dev.readU8(port + UART_DLL) | (dev.readU8(port + UART_DLM) << 8)).toBe(115200 / 9600);
      dev.close();
      expect(mdevDevices().map((m) => m.uuid)).toEqual([uuid]);
    } finally {
      mtty.exit();
      mdevVfioExit();
    }
  });

  it('refuses a port the card lacks, a bad baud rate, a bad type and a missing device', async () => {
    const noPort = capture();
    expect(await main(['tty', '--port', '1', '--text', 'x'], noPort.io)).toBe(2);
    expect(noPort.text.err).toMatch(
      /^mdev tty: --port 1: mtty-1 card [0-9a-f-]{36} has port 0 only/,
    );
    const baud = capture();
    expect(await main(['tty', '--baud', '7', '--text', 'x'], baud.io)).toBe(2);
    expect(baud.text.err).toMatch(/^mdev tty: --baud must be 115200 divided by a whole number/);
    const type = capture();
    expect(await main(['tty', '--type', 'mtty-3'], type.io)).toBe(2);
    const missing = capture();
    expect(await main(['tty', '--uuid', '0c0c0c0c-0000-4000-8000-000000000001'], missing.io)).toBe(
      1,
    );
    expect(missing.text.err).toContain('ENODEV');
    expect(mdevDevices()).toEqual([]);
    expect(sysfs.exists('/sys/class/mtty')).toBe(false);
  });
});

describe('mdev tty on a terminal', () => {
  it('switches the terminal to raw mode, echoes with CR LF, and ends at Ctrl-]', async () => {
    const raw: boolean[] = [];
    const stdin = Object.assign(
      Readable.from([Buffer.from('hi\r'), Buffer.from('ok\x1dignored')]),
      {
        isTTY: true,
        setRawMode: (on: boolean) => raw.push(on),
      },
    );
    const { io, text } = capture(stdin);
    expect(await main(['tty'], io)).toBe(0);
    expect(text.out.toString()).toBe('hi\r\nok');
    expect(raw).toEqual([true, false]);
    expect(text.err).toContain('Connected to');
    expect(text.err).toContain('Disconnected.');
  });
});
