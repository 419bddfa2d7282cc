import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../cli';
import { capture } from '../testing/capture';
import { TEST_PATTERN_BARS, takeScreenshot, testPatternPixel } from './screenshot';

const dir = mkdtempSync(join(tmpdir(), 'mdev-screenshot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The RGBA pixel at (x, y) of a decoded PNG, as 0xRRGGBBAA. */
function rgba(png: PNG, x: number, y: number): number {
  const i = (y * png.width + x) * 4;
  return (
    ((png.data[i]! << 24) |
      (png.data[i + 1]! << 16) |
      (png.data[i + 2]! << 8) |
      png.data[i + 3]!) >>>
    0
  );
}

function grey(v: number): number {
  return ((v << 24) | (v << 16) | (v << 8) | 0xff) >>> 0;
}

describe('mdev screenshot', () => {
  it('saves the mdpy-xga gradient as a PNG, every pixel as the device drew it', async () => {
    const out = join(dir, 'mdpy.png');
    const { io, text } = capture();
    expect(await main(['screenshot', '--type', 'mdpy-xga', out], io)).toBe(0);
    expect(text.out).toMatch(
      /^mdpy-xga [0-9a-f-]{36}: 1024x768 XR24, stride 4096, via region-mmap/,
    );
    const png = PNG.sync.read(readFileSync(out));
    expect([png.width, png.height]).toEqual([1024, 768]);
    for (let y = 0; y < 768; y++) {
      const want = grey(Math.floor((y * 255) / 768));
      for (let x = 0; x < 1024; x += 1) {
        if (rgba(png, x, y) !== want) {
          expect.fail(
            `pixel (${x}, ${y}) is ${rgba(png, x, y).toString(16)}, not ${want.toString(16)}`,
          );
        }
      }
    }
    // Top black, bottom nearly white.
    expect(rgba(png, 0, 0)).toBe(0x000000ff);
    expect(rgba(png, 1023, 767)).toBe(grey(254));
    // Everything was torn down again.
    expect(mdevDevices()).toEqual([]);
    expect(sysfs.exists('/sys/devices/virtual/mdpy/mdpy')).toBe(false);
  });

  it('reads a region plane with read() when asked, with the same picture', () => {
    const mapped = PNG.sync.read(takeScreenshot({ type: 'mdpy-vga' }).png);
    const shot = takeScreenshot({ type: 'mdpy-vga', read: true });
    expect(shot.via).toBe('region-read');
    const read = PNG.sync.read(shot.png);
    expect([read.width, read.height]).toEqual([640, 480]);
    expect(read.data.equals(mapped.data)).toBe(true);
  });

  it('saves the mbochs-small test pattern drawn through the memory BAR, via a dma-buf', async () => {
    const out = join(dir, 'mbochs.png');
    const { io, text } = capture();
    expect(await main(['screenshot', '--type', 'mbochs-small', out], io)).toBe(0);
    expect(text.out).toMatch(/: 800x600 XR24, stride 3200, via dmabuf/);
    const png = PNG.sync.read(readFileSync(out));
    expect([png.width, png.height]).toEqual([800, 600]);
    for (let y = 0; y < 600; y++) {
      for (let x = 0; x < 800; x++) {
        const want = ((testPatternPixel(x, y, 800, 600) << 8) | 0xff) >>> 0;
        if (rgba(png, x, y) !== want) {
          expect.fail(
            `pixel (${x}, ${y}) is ${rgba(png, x, y).toString(16)}, not ${want.toString(16)}`,
          );
        }
      }
    }
    // The pattern itself: bars on top, a ramp at the bottom.
    expect(rgba(png, 0, 0)).toBe(0xffffffff);
    expect(rgba(png, 150, 10)).toBe(((TEST_PATTERN_BARS[1]! << 8) | 0xff) >>> 0); // yellow
    expect(rgba(png, 799, 10)).toBe(0x000000ff);
    expect(rgba(png, 0, 599)).toBe(0x000000ff);
    expect(rgba(png, 799, 599)).toBe(0xffffffff);
    expect(mdevDevices()).toEqual([]);
  });

  it('takes the mode to set on an mbochs display', () => {
    const shot = takeScreenshot({ type: 'mbochs-medium', mode: { width: 1280, height: 720 } });
    expect([shot.width, shot.height, shot.stride, shot.via]).toEqual([1280, 720, 5120, 'dmabuf']);
    const png = PNG.sync.read(shot.png);
    expect(rgba(png, 1279, 0)).toBe(0x000000ff);
    expect(rgba(png, 640, 719)).toBe(grey(Math.round((640 * 255) / 1279)));
  });

  it('fails cleanly on bad input', async () => {
    const unknown = capture();
    expect(await main(['screenshot', '--type', 'vga', join(dir, 'x.png')], unknown.io)).toBe(2);
    expect(unknown.text.err).toContain('unknown type "vga"');
    const noOut = capture();
    expect(await main(['screenshot', '--type', 'mdpy-vga'], noOut.io)).toBe(2);
    expect(noOut.text.err).toMatch(/^mdev screenshot: one OUT.png file is required\n/);
    expect(noOut.text.err).toContain('usage: mdev screenshot');
    const noType = capture();
    expect(await main(['screenshot', join(dir, 'x.png')], noType.io)).toBe(2);
    expect(noType.text.err).toMatch(
      /^mdev screenshot: --type TYPE is required \(or -u UUID of a running host's display\)\n/,
    );
    // A mode larger or smaller than the type shows: refused before the device is made.
    for (const [type, mode, reason] of [
      ['mbochs-small', '1600x1200', 'mbochs-small shows 64x64 to 800x600'],
      ['mbochs-medium', '63x480', 'mbochs-medium shows 64x64 to 1920x1440'],
    ]) {
      const big = capture();
      expect(
        await main(['screenshot', '--type', type!, '--mode', mode!, join(dir, 'x.png')], big.io),
      ).toBe(2);
      expect(big.text.err).toContain(reason);
    }
    const badMode = capture();
    expect(
      await main(
        ['screenshot', '--type', 'mbochs-small', '--mode', '800by600', 'x.png'],
        badMode.io,
      ),
    ).toBe(2);
    expect(badMode.text.err).toContain('--mode');
    const fixed = capture();
    expect(
      await main(['screenshot', '--type', 'mdpy-hd', '--mode', '800x600', 'x.png'], fixed.io),
    ).toBe(2);
    const unwritable = capture();
    const path = join(dir, 'no/such/dir/x.png');
    expect(await main(['screenshot', '--type', 'mdpy-vga', path], unwritable.io)).toBe(1);
    expect(unwritable.text.err).toBe(`mdev screenshot: cannot write ${path}: ENOENT\n`);
    // Nothing was left behind by the failures.
    expect(mdevDevices()).toEqual([]);
    expect(sysfs.exists('/sys/devices/virtual/mbochs/mbochs')).toBe(false);
  });

  it('takes a relative OUT.png from the folder the user ran the command in', async () => {
    const { io, text } = capture();
    expect(await main(['screenshot', '--type', 'mdpy-vga', 'rel.png'], { ...io, cwd: dir })).toBe(
      0,
    );
    expect(text.out).toMatch(new RegExp(`-> ${join(dir, 'rel.png')} \\(\\d+ bytes\\)\\n$`));
    expect(PNG.sync.read(readFileSync(join(dir, 'rel.png'))).width).toBe(640);
  });

  it('is listed by mdev help', async () => {
    const { io, text } = capture();
    expect(await main(['help'], io)).toBe(0);
    expect(text.out).toContain('screenshot');
  });
});
