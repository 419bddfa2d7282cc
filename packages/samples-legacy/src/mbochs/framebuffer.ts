import { KernelError } from '@mdev/driver-core';
import { DRM_FORMAT_XRGB8888 } from '../mdpy/defs';
import {
  VBE_DISPI_ENABLED,
  VBE_DISPI_INDEX_BPP,
  VBE_DISPI_INDEX_ENABLE,
  VBE_DISPI_INDEX_VIRT_WIDTH,
  VBE_DISPI_INDEX_X_OFFSET,
  VBE_DISPI_INDEX_XRES,
  VBE_DISPI_INDEX_Y_OFFSET,
  VBE_DISPI_INDEX_YRES,
} from './defs';

/** The smallest width and height mbochs accepts as a mode. */
export const MBOCHS_MIN_RES = 64;

/** Mirrors struct mbochs_mode: a scanout the guest programmed into the dispi registers. */
export interface MbochsMode {
  drmFormat: number;
  bytepp: number;
  width: number;
  height: number;
  /** Bytes per line: max(VIRT_WIDTH, XRES) * bytepp. */
  stride: number;
  /** stride * height. */
  size: number;
  /** Where the visible picture starts in video memory: X_OFFSET * bytepp + Y_OFFSET * stride. */
  offset: number;
}

/** Mirrors mbochs_modes_equal(). */
export function mbochsModesEqual(a: MbochsMode, b: MbochsMode): boolean {
  return (
    a.drmFormat === b.drmFormat &&
    a.bytepp === b.bytepp &&
    a.width === b.width &&
    a.height === b.height &&
    a.stride === b.stride &&
    a.size === b.size &&
    a.offset === b.offset
  );
}

/** Reads a dispi register (the register file or any `regs[index]` source). */
export type DispiReader = (index: number) => number;

/**
 * Mirrors mbochs_check_framebuffer(): the mode the registers describe, or EINVAL when the display
 * is disabled, the depth is not 32 bpp, the resolution is below 64x64 or the scanout does not fit
 * in `memsize` bytes of video memory.
 */
export function mbochsCheckFramebuffer(reg: DispiReader, memsize: number): MbochsMode {
  if (!(reg(VBE_DISPI_INDEX_ENABLE) & VBE_DISPI_ENABLED)) {
    throw new KernelError('EINVAL', 'mbochs: display disabled');
  }
  const bpp = reg(VBE_DISPI_INDEX_BPP);
  if (bpp !== 32) throw new KernelError('EINVAL', `mbochs: bpp ${bpp} not supported`);
  const bytepp = 4;
  const width = reg(VBE_DISPI_INDEX_XRES);
  const height = reg(VBE_DISPI_INDEX_YRES);
  const virtWidth = Math.max(reg(VBE_DISPI_INDEX_VIRT_WIDTH), width);
  const stride = virtWidth * bytepp;
  const size = stride * height;
  const offset = reg(VBE_DISPI_INDEX_X_OFFSET) * bytepp + reg(VBE_DISPI_INDEX_Y_OFFSET) * stride;
  if (width < MBOCHS_MIN_RES || height < MBOCHS_MIN_RES) {
    throw new KernelError('EINVAL', `mbochs: invalid resolution ${width}x${height}`);
  }
  if (offset + size > memsize) {
    throw new KernelError(
      'EINVAL',
      `mbochs: framebuffer memory overflow (${offset} + ${size} > ${memsize})`,
    );
  }
  return { drmFormat: DRM_FORMAT_XRGB8888, bytepp, width, height, stride, size, offset };
}
