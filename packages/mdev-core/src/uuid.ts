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

const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** Significant digits of U64_MAX in each base: a longer run of digits overflows. */
const U64_DIGITS: Record<number, number> = { 8: 22, 10: 20, 16: 16 };

function digitValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return 99;
}

/**
 * Mirrors kstrtoul(buf, 0, &val) (lib/kstrtox.c): an unsigned integer in base 0 (0x.. hex when a
 * hex digit follows, 0.. octal, else decimal), an optional leading '+', and one trailing
 * newline. ERANGE beyond 64 bits (checked first, as _kstrtoull does), EINVAL for no digits or
 * anything after them. Linear in the length: one pass over the digits, and the value is only
 * built when it can fit in 64 bits.
 */
export function kstrtoul(text: string): bigint {
  let i = text.charCodeAt(0) === 0x2b ? 1 : 0; // '+'
  let base = 10;
  if (text.charCodeAt(i) === 0x30) {
    // _parse_integer_fixup_radix(): "0x" needs a hex digit after it, else it is octal 0.
    const x = text.charCodeAt(i + 1) | 0x20;
    if (x === 0x78 && digitValue(text.charCodeAt(i + 2)) < 16) {
      base = 16;
      i += 2;
    } else {
      base = 8;
    }
  }
  const start = i;
  while (i < text.length && digitValue(text.charCodeAt(i)) < base) i++;
  const end = i;
  if (end === start) throw new KernelError('EINVAL', `kstrtoul: ${quote(text)} is not a number`);
  let first = start;
  while (first < end - 1 && text.charCodeAt(first) === 0x30) first++;
  const radix = base === 16 ? '0x' : base === 8 ? '0o' : '';
  const value =
    end - first > U64_DIGITS[base]! ? U64_MAX + 1n : BigInt(`${radix}${text.slice(first, end)}`);
  if (value > U64_MAX) throw new KernelError('ERANGE', `kstrtoul: ${quote(text)} overflows`);
  if (i < text.length && text.charCodeAt(i) === 0x0a) i++;
  if (i !== text.length)
    throw new KernelError('EINVAL', `kstrtoul: ${quote(text)} is not a number`);
  return value;
}

/** The text for an error message, cut short: a user may write a page of digits. */
function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}
