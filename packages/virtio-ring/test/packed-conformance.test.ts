// Conformance of the packed layout with the Linux uapi header <linux/virtio_ring.h>: a C program
// compiled by the system's gcc prints struct vring_packed_desc's and struct
// vring_packed_desc_event's sizes, offsets and flags, which must be this package's constants.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  VRING_PACKED_DESC_ADDR,
  VRING_PACKED_DESC_F_AVAIL,
  VRING_PACKED_DESC_F_USED,
  VRING_PACKED_DESC_FLAGS,
  VRING_PACKED_DESC_ID,
  VRING_PACKED_DESC_LEN,
  VRING_PACKED_DESC_SIZE,
  VRING_PACKED_DESC_WORDS16,
  VRING_PACKED_DESC_WORDS32,
  VRING_PACKED_DESC16_FLAGS,
  VRING_PACKED_DESC16_ID,
  VRING_PACKED_DESC32_ADDR_LO,
  VRING_PACKED_DESC32_LEN,
  VRING_PACKED_EVENT_F_WRAP_CTR,
  VRING_PACKED_EVENT_FLAG_DESC,
  VRING_PACKED_EVENT_FLAG_DISABLE,
  VRING_PACKED_EVENT_FLAG_ENABLE,
  VRING_PACKED_EVENT_FLAGS,
  VRING_PACKED_EVENT_OFF_WRAP,
  VRING_PACKED_EVENT_SIZE,
  VRING_PACKED_EVENT16_FLAGS,
  VRING_PACKED_EVENT16_OFF_WRAP,
} from '../src/index';

const source = fileURLToPath(new URL('./conformance/vring_packed_uapi.c', import.meta.url));

function hasGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
  } catch {
    return false;
  }
  return existsSync('/usr/include/linux/virtio_ring.h');
}

const skip = !hasGcc();
if (skip)
  console.warn('virtio-ring packed conformance skipped: gcc or <linux/virtio_ring.h> missing');

const dir = mkdtempSync(join(tmpdir(), 'vring-packed-uapi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(skip)('<linux/virtio_ring.h> packed conformance', () => {
  it('agrees on struct vring_packed_desc and struct vring_packed_desc_event', () => {
    const binary = join(dir, 'vring_packed_uapi');
    execFileSync('gcc', ['-std=gnu11', '-Wall', '-O1', '-o', binary, source]);
    const values = new Map<string, number>();
    for (const line of execFileSync(binary, { encoding: 'utf8' }).split('\n')) {
      const [k, v] = line.split(' ');
      if (k && v !== undefined) values.set(k, Number(v));
    }
    const ours: Record<string, number> = {
      sizeof_vring_packed_desc: VRING_PACKED_DESC_SIZE,
      offsetof_vring_packed_desc_addr: VRING_PACKED_DESC_ADDR,
      offsetof_vring_packed_desc_len: VRING_PACKED_DESC_LEN,
      offsetof_vring_packed_desc_id: VRING_PACKED_DESC_ID,
      offsetof_vring_packed_desc_flags: VRING_PACKED_DESC_FLAGS,
      sizeof_vring_packed_desc_event: VRING_PACKED_EVENT_SIZE,
      offsetof_vring_packed_desc_event_off_wrap: VRING_PACKED_EVENT_OFF_WRAP,
      offsetof_vring_packed_desc_event_flags: VRING_PACKED_EVENT_FLAGS,
      word32_vring_packed_desc_addr_lo: VRING_PACKED_DESC32_ADDR_LO,
      word32_vring_packed_desc_len: VRING_PACKED_DESC32_LEN,
      word16_vring_packed_desc_id: VRING_PACKED_DESC16_ID,
      word16_vring_packed_desc_flags: VRING_PACKED_DESC16_FLAGS,
      words32_vring_packed_desc: VRING_PACKED_DESC_WORDS32,
      words16_vring_packed_desc: VRING_PACKED_DESC_WORDS16,
      word16_vring_packed_desc_event_off_wrap: VRING_PACKED_EVENT16_OFF_WRAP,
      word16_vring_packed_desc_event_flags: VRING_PACKED_EVENT16_FLAGS,
      VRING_PACKED_DESC_F_AVAIL,
      VRING_PACKED_DESC_F_USED,
      VRING_PACKED_EVENT_FLAG_ENABLE,
      VRING_PACKED_EVENT_FLAG_DISABLE,
      VRING_PACKED_EVENT_FLAG_DESC,
      VRING_PACKED_EVENT_F_WRAP_CTR,
    };
    for (const [name, value] of Object.entries(ours)) {
      expect({ name, value: values.get(name) }).toEqual({ name, value });
    }
  });
});
