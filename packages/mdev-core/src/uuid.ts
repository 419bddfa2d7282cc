import { KernelError } from '@mdev/driver-core';

/** Length of a UUID in its canonical text form (UUID_STRING_LEN). */
export const UUID_STRING_LEN = 36;

const DASHES = new Set([8, 13, 18, 23]);

/**
 * Mirrors guid_parse(): checks the first 36 characters (hex digits with dashes at 8, 13, 18 and
 * 23, either case) and returns the canonical lower-case form (the kernel's "%pUl"). EINVAL
 * otherwise.
 */
export function guidParse(text: string): string {
  if (text.length < UUID_STRING_LEN)
    throw new KernelError('EINVAL', `guid_parse: "${text}" is too short`);
  for (let i = 0; i < UUID_STRING_LEN; i++) {
    const c = text.charCodeAt(i);
    if (DASHES.has(i)) {
      if (c !== 0x2d) throw new KernelError('EINVAL', `guid_parse: "${text}" is not a UUID`);
      continue;
    }
    const hex = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
    if (!hex) throw new KernelError('EINVAL', `guid_parse: "${text}" is not a UUID`);
  }
  return text.slice(0, UUID_STRING_LEN).toLowerCase();
}

/**
 * Mirrors kstrtoul(buf, 0, &val): an unsigned integer in base 0 (0x.. hex, 0.. octal, else
 * decimal), an optional leading '+', and one trailing newline. EINVAL for anything else, ERANGE
 * beyond 64 bits.
 */
export function kstrtoul(text: string): bigint {
  let s = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (s.startsWith('+')) s = s.slice(1);
  let digits: string;
  let base: number;
  if (/^0[xX]/.test(s)) {
    digits = s.slice(2);
    base = 16;
  } else if (s.length > 1 && s.startsWith('0')) {
    digits = s.slice(1);
    base = 8;
  } else {
    digits = s;
    base = 10;
  }
  const valid = base === 16 ? /^[0-9a-fA-F]+$/ : base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!valid.test(digits)) throw new KernelError('EINVAL', `kstrtoul: "${text}" is not a number`);
  let value = 0n;
  for (const d of digits) value = value * BigInt(base) + BigInt(Number.parseInt(d, base));
  if (value > 0xffff_ffff_ffff_ffffn)
    throw new KernelError('ERANGE', `kstrtoul: "${text}" overflows`);
  return value;
}
