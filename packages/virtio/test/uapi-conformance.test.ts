import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import * as config from '../src/virtio-config';
import * as ids from '../src/virtio-ids';
import * as net from '../src/virtio-net';

// The C program prints every constant and layout figure of the system's <linux/virtio_*.h>.
const source = fileURLToPath(new URL('./uapi-conformance.c', import.meta.url));
const headers = ['virtio_config.h', 'virtio_ids.h', 'virtio_net.h', 'virtio_ring.h'].map(
  (h) => `/usr/include/linux/${h}`,
);
const hasGcc = spawnSync('gcc', ['--version']).status === 0;
const hasHeaders = headers.every((h) => existsSync(h));
const skipReason = !hasGcc
  ? 'gcc is not installed'
  : !hasHeaders
    ? `the Linux uapi headers are missing (${headers.filter((h) => !existsSync(h)).join(', ')})`
    : '';

/** Our constants that have no #define in the uapi headers. */
const notInUapi = new Set(['VIRTIO_DEV_ANY_ID']);

function ours(): Map<string, number> {
  const m = new Map<string, number>();
  for (const mod of [config, ids, net]) {
    for (const [k, v] of Object.entries(mod)) if (typeof v === 'number') m.set(k, v);
  }
  return m;
}

// Without gcc or the headers the suite is reported as skipped, with the reason in its title.
const suite = skipReason === '' ? describe : describe.skip;
const title =
  skipReason === ''
    ? 'uapi conformance with the system headers'
    : `uapi conformance skipped: ${skipReason}`;

suite(title, () => {
  const dir = mkdtempSync(join(tmpdir(), 'virtio-uapi-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  let cached: Map<string, number> | undefined;
  function c(): Map<string, number> {
    if (cached) return cached;
    const exe = join(dir, 'uapi');
    execFileSync('gcc', ['-Wall', '-Werror', '-o', exe, source]);
    const out = execFileSync(exe, { encoding: 'utf8' });
    cached = new Map(
      out
        .trim()
        .split('\n')
        .map((line) => {
          const [name, value] = line.split(' ');
          return [name!, Number(value)] as const;
        }),
    );
    return cached;
  }

  it('every constant we define has the header value', () => {
    const theirs = c();
    const mismatches: string[] = [];
    for (const [name, value] of ours()) {
      if (notInUapi.has(name)) continue;
      const want = theirs.get(name);
      if (want === undefined) mismatches.push(`${name}: not in the headers`);
      else if (want !== value) mismatches.push(`${name}: ours ${value}, header ${want}`);
    }
    expect(mismatches).toEqual([]);
  });

  it('every feature, status and device id the headers define is mirrored', () => {
    const mine = ours();
    const missing = [...c().keys()].filter(
      (name) => /^VIRTIO_(ID|CONFIG_S|F|NET_F|NET_S|RING_F)_/.test(name) && !mine.has(name),
    );
    expect(missing).toEqual([]);
  });

  it('virtio_net_hdr_v1 has the layout of virtio_net_hdr_mrg_rxbuf (the VERSION_1 header)', () => {
    const theirs = c();
    expect(theirs.get('VIRTIO_NET_HDR_V1_SIZE')).toBe(net.VIRTIO_NET_HDR_MRG_RXBUF_SIZE);
    expect(theirs.get('VIRTIO_NET_HDR_V1_NUM_BUFFERS')).toBe(net.VIRTIO_NET_HDR_NUM_BUFFERS);
  });
});
