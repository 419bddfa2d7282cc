import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { KernelError, sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import {
  DRM_PLANE_TYPE_PRIMARY,
  mdevVfioExit,
  VFIO_GFX_PLANE_TYPE_DMABUF,
  VFIO_GFX_PLANE_TYPE_PROBE,
  VFIO_GFX_PLANE_TYPE_REGION,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_BAR2_REGION_INDEX,
  type VfioDevice,
  type VfioGfxPlaneInfo,
  vfioDeviceOpen,
} from '@mdev/mdev-vfio';
import {
  DRM_FORMAT_XRGB8888,
  generateEdid,
  MBOCHS_EDID_REGION_INDEX,
  MBOCHS_MMIO_DISPI_BASE,
  MBOCHS_TYPES,
  MDPY_TYPES,
  mbochsInit,
  mdpyInit,
  VBE_DISPI_ENABLED,
  VBE_DISPI_INDEX_BPP,
  VBE_DISPI_INDEX_ENABLE,
  VBE_DISPI_INDEX_VIRT_WIDTH,
  VBE_DISPI_INDEX_X_OFFSET,
  VBE_DISPI_INDEX_XRES,
  VBE_DISPI_INDEX_Y_OFFSET,
  VBE_DISPI_INDEX_YRES,
  VBE_DISPI_LFB_ENABLED,
} from '@mdev/samples-legacy';
import { PNG } from 'pngjs';
import { HostRequestError, HostUnavailableError, hostRequest } from '../host/client';
import type { Args } from '../host/protocol';
import { socketIsLive } from '../host/server';
import type { CommandIo } from '../io';
import { filePath, UsageError, uuidOption } from '../usage';
import { controlPath } from './mdevctl';

export const summary = 'create an mdpy or mbochs display, read its framebuffer and save a PNG';

/** The types a screenshot can be taken of. */
const KNOWN_TYPES = [
  ...MDPY_TYPES.map((t) => `mdpy-${t.group}`),
  ...MBOCHS_TYPES.map((t) => `mbochs-${t.group}`),
];

export const usage = `usage: mdev screenshot --type TYPE [--mode WxH] [--uuid UUID] [--read] OUT.png
       mdev screenshot -u UUID [--mode WxH] [--read] [--control PATH] OUT.png

Creates an mdev of TYPE (${KNOWN_TYPES.join(', ')}),
opens it through its VFIO device, queries the primary plane and writes it as a PNG.
An mbochs display first gets a mode through its dispi registers (default 800x600, or --mode)
and a test pattern drawn through its memory BAR; mdpy shows the grey gradient it draws itself.

  --mode WxH    mbochs only: the mode to set, from 64x64 up to what the type holds
                (mbochs-small: 800x600)
  --uuid UUID   the UUID of the mdev to create (default: a random one)
  --read        read a region plane with read() rather than mmap()

With -u UUID and no --type, while a host listens on the control socket (--control PATH,
default as 'mdev host' has it): the picture of that display of the host's. An mbochs display
no guest has set a mode on gets --mode (default 800x600) and the test pattern first.
`;

/** Bytes per pixel of DRM_FORMAT_XRGB8888. */
const BYTEPP = 4;

/** The eight colour bars of the test pattern, left to right (0xRRGGBB). */
export const TEST_PATTERN_BARS = [
  0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000,
];

/**
 * The test pattern drawn into an mbochs display, as 0xRRGGBB: eight colour bars over the top
 * two thirds, a grey ramp from black to white across the bottom third.
 */
export function testPatternPixel(x: number, y: number, width: number, height: number): number {
  if (y < Math.floor((height * 2) / 3)) {
    return TEST_PATTERN_BARS[Math.floor((x * TEST_PATTERN_BARS.length) / width)]!;
  }
  const v = width > 1 ? Math.round((x * 255) / (width - 1)) : 0;
  return (v << 16) | (v << 8) | v;
}

/** What `takeScreenshot` did. */
export interface Screenshot {
  type: string;
  uuid: string;
  width: number;
  height: number;
  stride: number;
  drmFormat: number;
  /** How the pixels were fetched: a region (mmap or read) or a dma-buf. */
  via: 'region-mmap' | 'region-read' | 'dmabuf';
  /** The PNG file's bytes. */
  png: Buffer;
}

/** Options of `takeScreenshot`. */
export interface ScreenshotOptions {
  type: string;
  uuid?: string;
  /** mbochs only: the mode to set (default 800x600). */
  mode?: { width: number; height: number };
  /** Read a region plane with read() instead of mapping it. */
  read?: boolean;
}

/** The smallest mode mbochs shows (mbochs_check_framebuffer() in samples/vfio-mdev/mbochs.c). */
const MBOCHS_MIN_RES = 64;
/** The largest the EDID's detailed timing descriptor can describe (12-bit fields). */
const EDID_MAX_RES = 4095;
/** qemu's VBE_DISPI_MAX_XRES / _YRES: the limits of an mbochs type that sets none. */
const DISPI_MAX = { x: 16000, y: 12000 };

/**
 * The mode `--mode WxH` asks of an mbochs display of `type`: at least 64x64, at most the type's
 * limits (within which a 32-bit scanout fits its video memory). UsageError otherwise.
 */
export function parseMode(text: string, type: string): { width: number; height: number } {
  const m = /^(\d{1,5})x(\d{1,5})$/.exec(text);
  if (!m) throw new UsageError(`--mode must look like 800x600, not "${text}"`);
  const width = Number(m[1]);
  const height = Number(m[2]);
  const def = MBOCHS_TYPES.find((t) => `mbochs-${t.group}` === type);
  if (!def) throw new UsageError('--mode is for an mbochs display; mdpy has the mode of its type');
  const maxX = Math.min(def.maxX || DISPI_MAX.x, EDID_MAX_RES);
  const maxY = Math.min(def.maxY || DISPI_MAX.y, EDID_MAX_RES);
  if (width < MBOCHS_MIN_RES || height < MBOCHS_MIN_RES || width > maxX || height > maxY) {
    throw new UsageError(
      `--mode ${text}: ${type} shows ${MBOCHS_MIN_RES}x${MBOCHS_MIN_RES} to ${maxX}x${maxY}`,
    );
  }
  // The monitor plugged in describes the mode in its EDID, at 60 Hz: a mode whose pixel clock
  // the EDID cannot carry has no monitor to show it.
  try {
    generateEdid({ width, height, name: 'mdev-shot' });
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    throw new UsageError(`--mode ${text}: no 60 Hz monitor shows it (its pixel clock is too high)`);
  }
  return { width, height };
}

/** Programs a mode through the dispi registers in the MMIO BAR, as bochs-drm does. */
function setMode(dev: VfioDevice, width: number, height: number): void {
  const mmio = dev.getRegionInfo(VFIO_PCI_BAR2_REGION_INDEX).offset;
  const reg = (index: number, value: number) =>
    dev.writeU16(mmio + MBOCHS_MMIO_DISPI_BASE + 2 * index, value);
  reg(VBE_DISPI_INDEX_ENABLE, 0);
  reg(VBE_DISPI_INDEX_BPP, 32);
  reg(VBE_DISPI_INDEX_XRES, width);
  reg(VBE_DISPI_INDEX_YRES, height);
  reg(VBE_DISPI_INDEX_VIRT_WIDTH, width);
  reg(VBE_DISPI_INDEX_X_OFFSET, 0);
  reg(VBE_DISPI_INDEX_Y_OFFSET, 0);
  reg(VBE_DISPI_INDEX_ENABLE, VBE_DISPI_ENABLED | VBE_DISPI_LFB_ENABLED);
}

/** Draws the test pattern through the memory BAR (one write of the whole frame). */
function drawTestPattern(dev: VfioDevice, width: number, height: number): void {
  const bar0 = dev.getRegionInfo(VFIO_PCI_BAR0_REGION_INDEX).offset;
  const frame = new Uint8Array(width * height * BYTEPP);
  const dv = new DataView(frame.buffer);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      dv.setUint32((y * width + x) * BYTEPP, testPatternPixel(x, y, width, height), true);
    }
  }
  dev.write(bar0, frame);
}

/** Gives the display a monitor: an EDID for its mode, written with vfio.h's update protocol. */
function plugMonitor(dev: VfioDevice, width: number, height: number): void {
  const region = dev.getRegionInfo(MBOCHS_EDID_REGION_INDEX);
  const base = region.offset;
  const blobOffset = dev.readU32(base); // edid_offset
  dev.writeU32(base + 20, 2); // link_state: down
  const edid = generateEdid({ width, height, name: 'mdev-shot' });
  dev.write(base + blobOffset, edid);
  dev.writeU32(base + 8, edid.length); // edid_size
  dev.writeU32(base + 20, 1); // link_state: up
}

/**
 * Fetches the primary plane's pixels: through a dma-buf when the device offers them (mbochs),
 * else through the plane's region, mapped or read (mdpy). Returns the plane and its bytes.
 */
function fetchPlane(
  dev: VfioDevice,
  useRead: boolean,
): { plane: VfioGfxPlaneInfo; bytes: Uint8Array; via: Screenshot['via'] } {
  const supports = (flag: number) => {
    try {
      dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_PROBE | flag, DRM_PLANE_TYPE_PRIMARY);
      return true;
    } catch {
      return false;
    }
  };
  if (supports(VFIO_GFX_PLANE_TYPE_DMABUF)) {
    const plane = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    if (!plane.width) throw new Error('screenshot: the display shows no plane (mode not valid)');
    const buf = dev.getGfxDmabuf(plane.dmabufId);
    // A copy, so the PNG is made from a still frame and the dma-buf can be closed now.
    const bytes = buf.mmap().slice(0, plane.stride * plane.height);
    buf.close();
    return { plane, bytes, via: 'dmabuf' };
  }
  if (supports(VFIO_GFX_PLANE_TYPE_REGION)) {
    const plane = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_REGION, DRM_PLANE_TYPE_PRIMARY);
    if (!plane.width) throw new Error('screenshot: the display shows no plane');
    const region = dev.getRegionInfo(plane.dmabufId); // the union's region_index
    const length = plane.stride * plane.height;
    if (length > region.size) throw new Error('screenshot: the plane is larger than its region');
    if (useRead) return { plane, bytes: dev.read(region.offset, length), via: 'region-read' };
    const bytes = dev.mmap(region.offset, region.size).slice(0, length);
    return { plane, bytes, via: 'region-mmap' };
  }
  throw new Error('screenshot: the device offers neither dma-buf nor region planes');
}

/** Converts XRGB8888 (little-endian: B, G, R, X) lines into an RGBA PNG. */
function toPng(bytes: Uint8Array, width: number, height: number, stride: number): Buffer {
  const png = new PNG({ width, height, colorType: 6 });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const src = y * stride + x * BYTEPP;
      const dst = (y * width + x) * 4;
      png.data[dst] = bytes[src + 2]!;
      png.data[dst + 1] = bytes[src + 1]!;
      png.data[dst + 2] = bytes[src]!;
      png.data[dst + 3] = 0xff;
    }
  }
  return PNG.sync.write(png);
}

/**
 * What the display `dev` shows, as a PNG. With `mode`, an mbochs display is first given a
 * monitor, that mode and the test pattern, as a guest's driver would.
 */
function capture(
  dev: VfioDevice,
  type: string,
  options: { mode?: { width: number; height: number }; read?: boolean },
): Screenshot {
  if (options.mode) {
    const { width, height } = options.mode;
    plugMonitor(dev, width, height);
    setMode(dev, width, height);
    // The device checks the mode when asked for its plane: no plane, no picture to draw.
    const plane = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    if (!plane.width) {
      throw new Error(`screenshot: the display shows no plane at ${width}x${height}`);
    }
    drawTestPattern(dev, width, height);
  }
  const { plane, bytes, via } = fetchPlane(dev, options.read ?? false);
  if (plane.drmFormat !== DRM_FORMAT_XRGB8888) {
    throw new Error(`screenshot: drm format 0x${plane.drmFormat.toString(16)} not supported`);
  }
  return {
    type,
    uuid: dev.uuid,
    width: plane.width,
    height: plane.height,
    stride: plane.stride,
    drmFormat: plane.drmFormat,
    via,
    png: toPng(bytes, plane.width, plane.height, plane.stride),
  };
}

/**
 * Loads the sample parent of `type`, creates an mdev through sysfs, opens its VFIO device, sets
 * a mode and draws a test pattern (mbochs), queries the primary plane and encodes it as a PNG.
 * Everything is torn down again before it returns.
 */
export function takeScreenshot(options: ScreenshotOptions): Screenshot {
  const [family] = options.type.split('-');
  if (!KNOWN_TYPES.includes(options.type)) {
    throw new UsageError(`unknown type "${options.type}" (known: ${KNOWN_TYPES.join(', ')})`);
  }
  if (family === 'mdpy' && options.mode) {
    throw new UsageError('--mode is for an mbochs display; mdpy has the mode of its type');
  }
  const uuid = options.uuid ?? randomUUID();
  const parent = family === 'mdpy' ? mdpyInit() : mbochsInit();
  let dev: VfioDevice | null = null;
  try {
    sysfs.write(`${parent.parent.path}/mdev_supported_types/${options.type}/create`, uuid);
    dev = vfioDeviceOpen(uuid);
    const mode = family === 'mbochs' ? (options.mode ?? { width: 800, height: 600 }) : undefined;
    return capture(dev, options.type, { mode, read: options.read });
  } finally {
    dev?.close();
    parent.exit(); // removes the mdev with the parent
    mdevVfioExit();
  }
}

/** Whether the mdev type `type` is a display a screenshot can be taken of. */
export const isDisplayType = (type: string) => KNOWN_TYPES.includes(type);

/**
 * A screenshot of the running display mdev `uuid` (mdpy or mbochs) of the process it lives in
 * (`mdev host`). With `setup`, an mbochs display that shows nothing yet (no guest set a mode)
 * is given `mode` (default 800x600) and the test pattern first, and so is one given a `mode`;
 * without it the display is only read (the status page), and one that shows nothing is EAGAIN.
 */
export function screenshotOf(
  uuid: string,
  options: { mode?: string; read?: boolean; setup?: boolean } = {},
): Screenshot {
  const m = mdevDevices().find((d) => d.active && d.uuid === uuid);
  if (!m) throw new KernelError('ENODEV', `screenshot: no device ${uuid}`);
  const type = m.type.name;
  if (!isDisplayType(type))
    throw new KernelError(
      'ENODEV',
      `screenshot: ${uuid} (${type}) is not an mdpy or mbochs display`,
    );
  const mode = options.mode === undefined ? undefined : parseMode(options.mode, type);
  const dev = vfioDeviceOpen(uuid);
  try {
    let setMode = mode;
    if (!setMode && type.startsWith('mbochs-')) {
      const plane = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
      if (!plane.width && !options.setup)
        throw new KernelError('EAGAIN', `screenshot: ${uuid} shows nothing yet (no mode set)`);
      if (!plane.width) setMode = { width: 800, height: 600 };
    }
    return capture(dev, type, { mode: setMode, read: options.read });
  } finally {
    dev.close();
  }
}

/** Writes `png` to `out`; false (and the reason on stderr) when it cannot. */
function writePng(io: CommandIo, out: string, png: Buffer): boolean {
  try {
    writeFileSync(out, png);
    return true;
  } catch (err) {
    io.stderr.write(
      `mdev screenshot: cannot write ${out}: ${(err as NodeJS.ErrnoException).code ?? err}\n`,
    );
    return false;
  }
}

const describeShot = (shot: Omit<Screenshot, 'png'>, out: string, bytes: number) =>
  `${shot.type} ${shot.uuid}: ${shot.width}x${shot.height} XR24, stride ${shot.stride}, via ${shot.via} -> ${out} (${bytes} bytes)\n`;

/** `mdev screenshot --type TYPE OUT.png`, or `-u UUID OUT.png` of a running host's display. */
export async function run(args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      type: { type: 'string' },
      mode: { type: 'string' },
      uuid: { type: 'string', short: 'u' },
      read: { type: 'boolean', default: false },
      control: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    io.stdout.write(usage);
    return 0;
  }
  // A command line it cannot run throws (UsageError, parseArgs' errors): `main` reports it with
  // the usage, exit status 2.
  if (positionals.length !== 1) throw new UsageError('one OUT.png file is required');
  const out = filePath(io, 'OUT.png', positionals[0]!);
  const uuid = uuidOption(values.uuid)?.toLowerCase();
  const control = controlPath(io, values.control);
  if (uuid !== undefined && values.type === undefined && (await socketIsLive(control))) {
    // The running host's display: the host reads it (and gives an mbochs display no guest
    // set up a mode and the test pattern), the PNG comes back.
    if (values.mode !== undefined && !/^\d{1,5}x\d{1,5}$/.test(values.mode))
      throw new UsageError(`--mode must look like 800x600, not "${values.mode}"`);
    const request: Args<'screenshot'> = { uuid, read: values.read };
    if (values.mode !== undefined) request.mode = values.mode;
    let shot: Omit<Screenshot, 'png'> & { png: string };
    try {
      shot = (await hostRequest(control, 'screenshot', request)) as typeof shot;
    } catch (err) {
      if (!(err instanceof HostRequestError || err instanceof HostUnavailableError)) throw err;
      io.stderr.write(`mdev screenshot: ${err.message}\n`);
      return 1;
    }
    const png = Buffer.from(shot.png, 'base64');
    if (!writePng(io, out, png)) return 1;
    io.stdout.write(describeShot(shot, out, png.length));
    return 0;
  }
  if (values.type === undefined)
    throw new UsageError("--type TYPE is required (or -u UUID of a running host's display)");
  if (!KNOWN_TYPES.includes(values.type)) {
    throw new UsageError(`unknown type "${values.type}" (known: ${KNOWN_TYPES.join(', ')})`);
  }
  const shot = takeScreenshot({
    type: values.type,
    uuid,
    mode: values.mode === undefined ? undefined : parseMode(values.mode, values.type),
    read: values.read,
  });
  if (!writePng(io, out, shot.png)) return 1;
  io.stdout.write(describeShot(shot, out, shot.png.length));
  return 0;
}
