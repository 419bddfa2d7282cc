import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type CpioEntry,
  readCpio,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  writeCpio,
} from './cpio';
import { buildInitramfs, initScript, VIRTIO_NET_MODULES } from './initramfs';
import { isMissing, peer } from './peers';
import { itWithPeers } from './vitest';

const scratch = mkdtempSync(join(tmpdir(), 'mdev-cpio-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('newc cpio', () => {
  it('writes headers, names and data padded to 4 bytes, and reads them back', () => {
    const entries: CpioEntry[] = [
      { name: 'bin', mode: S_IFDIR | 0o755 },
      // Name lengths 1..3 and data lengths 0..5 cover every padding remainder.
      { name: 'bin/a', mode: S_IFREG | 0o644, data: Buffer.from('') },
      { name: 'bin/bc', mode: S_IFREG | 0o600, data: Buffer.from('x') },
      { name: 'bin/def', mode: S_IFREG | 0o755, data: Buffer.from('hello') },
      { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
      { name: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 },
    ];
    const bytes = writeCpio(entries);
    // The first header, field by field: magic, ino 1, mode, uid, gid, nlink 2 (a directory),
    // mtime, size 0, dev 0:0, rdev 0:0, namesize 4 ("bin\0"), check 0.
    expect(bytes.toString('ascii', 0, 110)).toBe(
      '070701' +
        ['1', '41ed', '0', '0', '2', '0', '0', '0', '0', '0', '0', '4', '0']
          .map((f) => f.padStart(8, '0'))
          .join(''),
    );
    // 110 + 4 = 114, padded to 116: the next header starts there.
    expect(bytes.toString('ascii', 116, 122)).toBe('070701');
    expect(bytes.byteLength % 4).toBe(0);
    expect(bytes.toString('ascii').includes('TRAILER!!!\0')).toBe(true);

    const back = readCpio(bytes);
    expect(back.map((e) => e.name)).toEqual(entries.map((e) => e.name));
    expect(back.map((e) => e.mode)).toEqual(entries.map((e) => e.mode));
    expect(back.map((e) => e.data?.byteLength)).toEqual([0, 0, 1, 5, 7, 0]);
    expect(Buffer.from(back[3]!.data!).toString()).toBe('hello');
    expect(Buffer.from(back[4]!.data!).toString()).toBe('busybox');
    expect([back[5]!.rdevMajor, back[5]!.rdevMinor]).toEqual([5, 1]);
  });

  it('refuses names and sizes a newc header cannot carry, and malformed archives', () => {
    expect(() => writeCpio([{ name: '/abs', mode: S_IFREG }])).toThrow(/bad member name/);
    expect(() => writeCpio([{ name: 'TRAILER!!!', mode: S_IFREG }])).toThrow(/bad member name/);
    expect(() => writeCpio([{ name: 'x', mode: S_IFREG, uid: 2 ** 32 }])).toThrow(/uid/);
    const good = writeCpio([{ name: 'f', mode: S_IFREG | 0o644, data: Buffer.from('abc') }]);
    expect(() => readCpio(good.subarray(0, 50))).toThrow(/truncated header/);
    expect(() => readCpio(Buffer.concat([Buffer.from('070702'), good.subarray(6)]))).toThrow(
      /bad magic/,
    );
    // A size field claiming more data than there is.
    const long = Buffer.from(good);
    long.write('0000ffff', 6 + 6 * 8, 'ascii');
    expect(() => readCpio(long)).toThrow(/runs past the end/);
  });

  itWithPeers(['busybox'], 'busybox cpio lists what writeCpio wrote', () => {
    const bb = peer('busybox');
    if (isMissing(bb)) throw new Error(bb.reason);
    const file = join(scratch, 'list.cpio');
    writeFileSync(
      file,
      writeCpio([
        { name: 'etc', mode: S_IFDIR | 0o755 },
        { name: 'etc/motd', mode: S_IFREG | 0o644, data: Buffer.from('hi\n') },
        { name: 'etc/link', mode: S_IFLNK | 0o777, data: Buffer.from('motd') },
      ]),
    );
    const r = spawnSync(bb.path, ['cpio', '-t', '-v', '-F', file], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^drwxr-xr-x .* etc$/);
    expect(lines[1]).toMatch(/^-rw-r--r-- .* 3 .* etc\/motd$/);
    expect(lines[2]).toMatch(/^lrwxrwxrwx .* etc\/link -> motd$/);
  });
});

describe('buildInitramfs', () => {
  // A modules tree laid out as a kernel package's, with each compression the builder reads.
  const modulesDir = join(scratch, 'lib/modules/6.1.0-0-test');
  const fakeBusybox = join(scratch, 'busybox');
  const body = (name: string) => Buffer.from(`\x7fELF module ${name}`);
  mkdirSync(join(modulesDir, 'kernel/drivers/virtio'), { recursive: true });
  mkdirSync(join(modulesDir, 'kernel/drivers/net'), { recursive: true });
  writeFileSync(fakeBusybox, 'not really busybox');
  for (const m of VIRTIO_NET_MODULES) {
    const dir = join(modulesDir, 'kernel/drivers', /net|failover/.test(m) ? 'net' : 'virtio');
    if (m === 'virtio_net') writeFileSync(join(dir, `${m}.ko.gz`), gzipSync(body(m)));
    else writeFileSync(join(dir, `${m}.ko`), body(m));
  }

  it('holds busybox, /bin/sh, /dev/console, the modules in order and an executable /init', () => {
    const bytes = buildInitramfs({ modulesDir, busybox: fakeBusybox });
    const entries = readCpio(bytes);
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(Buffer.from(byName.get('bin/busybox')!.data!).toString()).toBe('not really busybox');
    expect(byName.get('bin/busybox')!.mode).toBe(S_IFREG | 0o755);
    expect(byName.get('bin/sh')!.mode & S_IFMT).toBe(S_IFLNK);
    expect(Buffer.from(byName.get('bin/sh')!.data!).toString()).toBe('busybox');
    expect(byName.get('dev/console')).toMatchObject({ mode: S_IFCHR | 0o600, rdevMajor: 5 });
    expect(byName.get('init')!.mode).toBe(S_IFREG | 0o755);
    const mods = entries.filter((e) => e.name.startsWith('lib/modules/') && e.name.endsWith('.ko'));
    expect(mods.map((e) => e.name)).toEqual(VIRTIO_NET_MODULES.map((m) => `lib/modules/${m}.ko`));
    // The gzipped module went in decompressed.
    expect(Buffer.from(byName.get('lib/modules/virtio_net.ko')!.data!)).toEqual(body('virtio_net'));
    // Every directory comes before what it holds (the kernel does not create parents).
    const seen = new Set<string>();
    for (const e of entries) {
      const parent = e.name.split('/').slice(0, -1).join('/');
      if (parent) expect(seen.has(parent), e.name).toBe(true);
      seen.add(e.name);
    }
    // The init script loads the modules in the order given.
    const init = Buffer.from(byName.get('init')!.data!).toString();
    expect(init.startsWith('#!/bin/sh\n')).toBe(true);
    expect(init).toContain(`for m in ${VIRTIO_NET_MODULES.join(' ')}; do`);
    // gzip wraps the same archive.
    expect(gunzipSync(buildInitramfs({ modulesDir, busybox: fakeBusybox, gzip: true }))).toEqual(
      bytes,
    );
  });

  it('decompresses .ko.xz with xz', () => {
    const xz = spawnSync('xz', ['-c'], { input: body('xzmod') });
    if (xz.error) throw new Error(`xz is needed to make the .ko.xz here: ${xz.error.message}`);
    writeFileSync(join(modulesDir, 'kernel/drivers/net/xzmod.ko.xz'), xz.stdout);
    const entries = readCpio(
      buildInitramfs({ modulesDir, busybox: fakeBusybox, modules: ['xzmod'] }),
    );
    const mod = entries.find((e) => e.name === 'lib/modules/xzmod.ko');
    expect(Buffer.from(mod!.data!)).toEqual(body('xzmod'));
  });

  it('names the module it cannot find, and refuses words unsafe in the script', () => {
    expect(() => buildInitramfs({ modulesDir, busybox: fakeBusybox, modules: ['nope'] })).toThrow(
      /module nope not found/,
    );
    expect(() => initScript({ target: '1.2.3.4; reboot' })).toThrow(/unsafe word/);
    expect(() => initScript({ arping: { count: -1 } })).toThrow(/bad count/);
  });
});
