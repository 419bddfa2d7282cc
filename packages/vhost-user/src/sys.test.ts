import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { Fd } from './fd';
import {
  acceptUnix,
  connectUnix,
  createEventFd,
  createMemfd,
  drainEventFd,
  fileSize,
  isEventFd,
  listenUnix,
  mapShared,
  POLLIN,
  peerCredentials,
  pollFds,
  receiveFds,
  sealShrink,
  sendFds,
  signalEventFd,
  socketPair,
  truncate,
  unmap,
  watchFd,
} from './sys';

const PAGE = 4096;
const openFds = () => readdirSync('/proc/self/fd').length;

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});
function owned<T extends Fd | Fd[]>(x: T): T {
  cleanup.push(() => {
    for (const fd of Array.isArray(x) ? x : [x]) fd.close();
  });
  return x;
}
function socketPath(): string {
  const path = join(
    tmpdir(),
    `vhost-user-test-${process.pid}-${Math.random().toString(36).slice(2)}`,
  );
  cleanup.push(() => rmSync(path, { force: true }));
  return path;
}

describe('fd passing (SCM_RIGHTS)', () => {
  it('sends a memfd over a socketpair; both sides map it and see each other write', () => {
    const [a, b] = owned(socketPair());
    const mem = owned(createMemfd('test-region', PAGE));
    expect(sendFds(a, new Uint8Array([7]), [mem])).toBe(1);

    const buf = new Uint8Array(4);
    const r = receiveFds(b, buf, 4);
    expect(r).not.toBeNull();
    expect(r!.bytes).toBe(1);
    expect(buf[0]).toBe(7);
    expect(r!.ctrunc).toBe(false);
    expect(r!.fds).toHaveLength(1);
    const received = owned(r!.fds[0]!);
    expect(received.value).not.toBe(mem.value);

    const mine = new Int32Array(mapShared(mem, { length: PAGE }));
    const theirs = new Int32Array(mapShared(received, { length: PAGE }));
    mine[3] = 0x1234_5678;
    expect(theirs[3]).toBe(0x1234_5678);
    // Atomics work on the external buffers: an atomic add on one view is seen by the other.
    Atomics.add(theirs, 5, 41);
    Atomics.add(mine, 5, 1);
    expect(Atomics.load(theirs, 5)).toBe(42);
    expect(Atomics.compareExchange(mine, 5, 42, 7)).toBe(42);
    expect(Atomics.load(theirs, 5)).toBe(7);
    unmap(mine.buffer as ArrayBuffer);
    unmap(theirs.buffer as ArrayBuffer);
  });

  it('listen, connect, accept: fds pass over a listening socket too', () => {
    const path = socketPath();
    const listener = owned(listenUnix(path));
    expect(acceptUnix(listener)).toBeNull();
    const client = owned(connectUnix(path));
    const server = owned(acceptUnix(listener)!);
    const ev = owned(createEventFd());
    sendFds(client, new Uint8Array([1, 2, 3]), [ev]);
    const r = receiveFds(server, new Uint8Array(8), 1)!;
    expect(r.bytes).toBe(3);
    const got = owned(r.fds[0]!);
    // The received fd is the same eventfd: a signal through it is drained from the original.
    signalEventFd(got, 5);
    expect(drainEventFd(ev)).toBe(5);
  });

  it('keeps at most maxFds and closes the rest (ctrunc), leaking none', () => {
    const [a, b] = owned(socketPair());
    const mems = owned([0, 1, 2, 3].map((i) => createMemfd(`m${i}`, PAGE)));
    const before = openFds();
    sendFds(a, new Uint8Array([0]), mems);
    const r = receiveFds(b, new Uint8Array(1), 1)!;
    expect(r.ctrunc).toBe(true);
    expect(r.fds).toHaveLength(1);
    expect(openFds()).toBe(before + 1);
    r.fds[0]!.close();
    expect(openFds()).toBe(before);
  });

  it('maxFds 0 takes no fds: the kernel drops them (MSG_CTRUNC), nothing leaks', () => {
    const [a, b] = owned(socketPair());
    const mem = owned(createMemfd('m', PAGE));
    const before = openFds();
    sendFds(a, new Uint8Array([0]), [mem, mem]);
    const r = receiveFds(b, new Uint8Array(1), 0)!;
    expect(r).toMatchObject({ bytes: 1, fds: [], ctrunc: true });
    expect(openFds()).toBe(before);
  });

  it('reports would-block as null and the end of the stream as 0 bytes', () => {
    const [a, b] = socketPair();
    owned(b);
    expect(receiveFds(b, new Uint8Array(4), 0)).toBeNull();
    a.close();
    expect(receiveFds(b, new Uint8Array(4), 0)).toMatchObject({ bytes: 0, fds: [] });
  });
});

describe('unix socket', () => {
  it('creates the socket file owner-only, and refuses a path in use', () => {
    const path = socketPath();
    owned(listenUnix(path));
    const st = statSync(path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(() => listenUnix(path)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
  });

  it('SO_PEERCRED names this process on both ends', () => {
    const path = socketPath();
    const listener = owned(listenUnix(path));
    const client = owned(connectUnix(path));
    const server = owned(acceptUnix(listener)!);
    const me = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
    expect(peerCredentials(server)).toEqual(me);
    expect(peerCredentials(client)).toEqual(me);
  });

  it('throws Node-shaped errors for failing system calls', () => {
    let err: unknown;
    try {
      connectUnix(join(tmpdir(), 'vhost-user-test-does-not-exist'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'connect' });
  });
});

describe('mmap', () => {
  it('unmap detaches the buffer: views read as empty, a second unmap is a no-op', () => {
    const mem = owned(createMemfd('m', 2 * PAGE));
    const buf = mapShared(mem, { length: 2 * PAGE });
    const bytes = new Uint8Array(buf);
    bytes[PAGE] = 9;
    expect(unmap(buf)).toBe(true);
    expect(buf.byteLength).toBe(0);
    expect(bytes.length).toBe(0);
    expect(bytes[PAGE]).toBeUndefined();
    // A detached buffer cannot get a new view either.
    expect(() => new Uint8Array(buf)).toThrow(TypeError);
    expect(unmap(buf)).toBe(false);
    // The data is still in the file: a new mapping sees it.
    const again = mapShared(mem, { length: 2 * PAGE });
    expect(new Uint8Array(again)[PAGE]).toBe(9);
    unmap(again);
  });

  it('maps at an offset and read-only', () => {
    const mem = owned(createMemfd('m', 2 * PAGE));
    const rw = new Uint8Array(mapShared(mem, { length: 2 * PAGE }));
    rw[PAGE + 1] = 0xab;
    const ro = new Uint8Array(mapShared(mem, { offset: PAGE, length: PAGE, writable: false }));
    expect(ro[1]).toBe(0xab);
    unmap(ro.buffer as ArrayBuffer);
    unmap(rw.buffer as ArrayBuffer);
  });

  it('a collected buffer is unmapped by its finalizer', () => {
    // A child node with --expose-gc: maps a memfd 16 times, drops the buffers, collects, and
    // counts the memfd's lines in /proc/self/maps before and after.
    const addon = fileURLToPath(new URL('../build/Release/vhost_user.node', import.meta.url));
    const code = `
      const native = require(process.argv[1]);
      const fs = require('node:fs');
      const count = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n')
        .filter((l) => l.includes('memfd:vhost-gc-test')).length;
      const fd = native.memfdCreate('vhost-gc-test');
      native.ftruncate(fd, 1 << 20);
      let bufs = [];
      for (let i = 0; i < 16; i++) bufs.push(native.mmap(fd, 0, 1 << 20, true));
      const mapped = count();
      bufs = null;
      const settle = (n) => {
        globalThis.gc();
        if (n > 0 && count() > 0) return setTimeout(() => settle(n - 1), 10);
        console.log(JSON.stringify({ mapped, after: count() }));
      };
      settle(50);
    `;
    const r = spawnSync(process.execPath, ['--expose-gc', '-e', code, addon], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ mapped: 16, after: 0 });
  });

  it('refuses buffers it did not map', () => {
    expect(() => unmap(new ArrayBuffer(8))).toThrow(TypeError);
  });

  it('fails with EINVAL for an unaligned offset', () => {
    const mem = owned(createMemfd('m', 2 * PAGE));
    expect(() => mapShared(mem, { offset: 1, length: PAGE })).toThrow(
      expect.objectContaining({ code: 'EINVAL', syscall: 'mmap' }),
    );
  });

  it('a worker thread loads the addon, maps the same fd number and sees the same memory', async () => {
    const mem = owned(createMemfd('shared', PAGE));
    const view = new Int32Array(mapShared(mem, { length: PAGE }));
    Atomics.store(view, 0, 1234);
    const addon = fileURLToPath(new URL('../build/Release/vhost_user.node', import.meta.url));
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const native = require(workerData.addon);
      const v = new Int32Array(native.mmap(workerData.fd, 0, 4096, true));
      const seen = Atomics.load(v, 0);
      Atomics.store(v, 1, seen + 1);
      native.unmap(v.buffer);
      parentPort.postMessage(seen);
    `;
    const worker = new Worker(code, { eval: true, workerData: { addon, fd: mem.value } });
    const seen = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect(seen).toBe(1234);
    expect(Atomics.load(view, 1)).toBe(1235);
    unmap(view.buffer as ArrayBuffer);
  });
});

describe('eventfd and poll', () => {
  it('signal makes the fd readable; drain returns the count and resets it', () => {
    const ev = owned(createEventFd());
    expect(pollFds([{ fd: ev, events: POLLIN }], 0)).toEqual([0]);
    expect(drainEventFd(ev)).toBe(0);
    expect(signalEventFd(ev)).toBe(true);
    expect(signalEventFd(ev, 2)).toBe(true);
    expect(pollFds([{ fd: ev, events: POLLIN }], -1)).toEqual([POLLIN]);
    expect(drainEventFd(ev)).toBe(3);
    expect(pollFds([{ fd: ev, events: POLLIN }], 0)).toEqual([0]);
  });

  it('a worker sleeps in poll on a kick eventfd and wakes when it is signalled', async () => {
    const kick = owned(createEventFd());
    const addon = fileURLToPath(new URL('../build/Release/vhost_user.node', import.meta.url));
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const native = require(workerData.addon);
      parentPort.postMessage('polling');
      const revents = native.poll([workerData.kick], [native.POLLIN], -1);
      parentPort.postMessage({ revents, count: native.eventfdRead(workerData.kick) });
    `;
    const worker = new Worker(code, { eval: true, workerData: { addon, kick: kick.value } });
    const messages: unknown[] = [];
    const done = new Promise((resolve, reject) => {
      worker.on('message', (m) => {
        messages.push(m);
        if (m === 'polling') signalEventFd(kick, 3);
        else resolve(m);
      });
      worker.once('error', reject);
    });
    await done;
    await worker.terminate();
    expect(messages).toEqual(['polling', { revents: [POLLIN], count: 3 }]);
  });

  it('poll returns all zeros after its timeout when nothing is ready', () => {
    const a = owned(createEventFd());
    const b = owned(createEventFd());
    expect(
      pollFds(
        [
          { fd: a, events: POLLIN },
          { fd: b, events: POLLIN },
        ],
        20,
      ),
    ).toEqual([0, 0]);
    signalEventFd(b);
    expect(
      pollFds(
        [
          { fd: a, events: POLLIN },
          { fd: b, events: POLLIN },
        ],
        20,
      ),
    ).toEqual([0, POLLIN]);
  });
});

describe('isEventFd', () => {
  it('tells an eventfd from a memfd, a socket and a closed fd', () => {
    const ev = owned(createEventFd());
    const mem = owned(createMemfd('not-an-eventfd', PAGE));
    const pair = owned(socketPair());
    expect(isEventFd(ev)).toBe(true);
    expect(isEventFd(mem)).toBe(false);
    expect(isEventFd(pair[0])).toBe(false);
    const gone = createEventFd();
    const n = gone.value;
    gone.close();
    expect(isEventFd(n)).toBe(false);
  });
});

describe('fileSize and sealShrink', () => {
  it('tells a memfd size and kind; an eventfd is not a regular file', () => {
    const mem = owned(createMemfd('size', 3 * PAGE));
    expect(fileSize(mem)).toEqual({ size: 3 * PAGE, regular: true });
    const ev = owned(createEventFd());
    expect(fileSize(ev).regular).toBe(false);
  });

  it('a sealed memfd can no longer shrink, but may grow', () => {
    const mem = owned(createMemfd('seal', 2 * PAGE));
    expect(sealShrink(mem)).toBe(true);
    expect(sealShrink(mem)).toBe(true);
    expect(() => truncate(mem, PAGE)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    truncate(mem, 4 * PAGE);
    expect(fileSize(mem).size).toBe(4 * PAGE);
  });

  it('a file that takes no seals says so', () => {
    const ev = owned(createEventFd());
    expect(sealShrink(ev)).toBe(false);
  });
});

describe('watchFd', () => {
  it('calls back from the event loop each time the eventfd is signalled, until stopped', async () => {
    const ev = owned(createEventFd());
    const seen: [number, number][] = [];
    let wake: () => void = () => {};
    const watch = watchFd(ev, POLLIN, (revents) => {
      seen.push([revents, drainEventFd(ev)]);
      wake();
    });
    const next = () => new Promise<void>((resolve) => (wake = resolve));
    let got = next();
    signalEventFd(ev, 2);
    await got;
    got = next();
    signalEventFd(ev);
    await got;
    expect(seen).toEqual([
      [POLLIN, 2],
      [POLLIN, 1],
    ]);
    expect(watch.stop()).toBe(true);
    expect(watch.stop()).toBe(false);
    signalEventFd(ev);
    // A stopped watch is silent: a few event-loop turns later nothing more was called.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(seen).toHaveLength(2);
    expect(drainEventFd(ev)).toBe(1);
  });

  it('reports the peer hanging up on a socket', async () => {
    const [a, b] = socketPair();
    owned(a);
    const revents = await new Promise<number>((resolve) => {
      const watch = watchFd(a, POLLIN, (r) => {
        watch.stop();
        resolve(r);
      });
      b.close();
    });
    // End of stream reads as readable (recv returns 0), as poll(2) says it.
    expect(revents & POLLIN).toBe(POLLIN);
  });

  it('refuses a closed fd, no events and a non-function with clear errors', () => {
    const ev = createEventFd();
    const n = ev.value;
    ev.close();
    expect(() => watchFd(n, POLLIN, () => {})).toThrow(expect.objectContaining({ code: 'EBADF' }));
    const ev2 = owned(createEventFd());
    expect(() => watchFd(ev2, 0, () => {})).toThrow(RangeError);
    expect(() => watchFd(ev2, POLLIN, 1 as unknown as () => void)).toThrow(TypeError);
  });

  it('a callback that throws is an uncaught exception of the thread, as in an I/O callback', () => {
    const addon = fileURLToPath(new URL('../build/Release/vhost_user.node', import.meta.url));
    const code = `
      const n = require(${JSON.stringify(addon)});
      const fd = n.eventfd(0);
      const h = n.watch(fd, n.POLLIN, () => { n.eventfdRead(fd); throw new Error('boom'); });
      process.on('uncaughtException', (e) => { console.log('caught ' + e.message); n.unwatch(h); });
      n.eventfdWrite(fd, 1);
    `;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 10_000 });
    expect([r.status, r.stdout.trim()]).toEqual([0, 'caught boom']);
  });

  it('a worker that ends with a watch running ends cleanly', async () => {
    const ev = owned(createEventFd());
    const addon = fileURLToPath(new URL('../build/Release/vhost_user.node', import.meta.url));
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const native = require(workerData.addon);
      native.watch(workerData.fd, native.POLLIN, () => {
        native.eventfdRead(workerData.fd);
        parentPort.postMessage('kicked');
      });
      parentPort.postMessage('watching');
    `;
    const worker = new Worker(code, { eval: true, workerData: { addon, fd: ev.value } });
    const messages: unknown[] = [];
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (m) => {
        messages.push(m);
        if (m === 'watching') signalEventFd(ev);
        else resolve();
      });
      worker.once('error', reject);
    });
    // The watch keeps the worker alive; terminate runs the addon's cleanup and returns.
    expect(await worker.terminate()).toBe(1);
    expect(messages).toEqual(['watching', 'kicked']);
  });
});

describe('Fd ownership', () => {
  it('closes exactly once; a closed Fd refuses use with EBADF', () => {
    const fd = createEventFd();
    const before = openFds();
    expect(fd.close()).toBe(true);
    expect(openFds()).toBe(before - 1);
    expect(fd.close()).toBe(false);
    expect(fd.closed).toBe(true);
    expect(() => fd.value).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(openFds()).toBe(before - 1);
  });

  it('release hands the number over without closing it', () => {
    const fd = createEventFd();
    const n = fd.release();
    expect(fd.closed).toBe(true);
    expect(fd.close()).toBe(false);
    const again = new Fd(n);
    expect(signalEventFd(again)).toBe(true);
    again.close();
  });
});

describe('argument checks in the addon', () => {
  it('TypeError for wrong types, RangeError for values out of range', () => {
    const ev = owned(createEventFd());
    expect(() => signalEventFd(ev, 0)).toThrow(RangeError);
    expect(() => signalEventFd(-1)).toThrow(RangeError);
    expect(() => signalEventFd(1.5)).toThrow(RangeError);
    expect(() => signalEventFd('3' as unknown as number)).toThrow(TypeError);
    expect(() => mapShared(ev, { length: 0 })).toThrow(RangeError);
    expect(() => mapShared(ev, { length: 2 ** 60 })).toThrow(RangeError);
    expect(() => sendFds(ev, [1] as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => sendFds(ev, new Uint8Array(0))).toThrow(RangeError);
    expect(() => sendFds(ev, new Uint8Array(1), new Array(65).fill(ev))).toThrow(RangeError);
    expect(() => receiveFds(ev, new Uint8Array(1), 65)).toThrow(RangeError);
    expect(() => listenUnix('x'.repeat(108))).toThrow(RangeError);
    expect(() => listenUnix('a\0b')).toThrow(RangeError);
    expect(() => listenUnix(socketPath(), { mode: 0o1000 })).toThrow(RangeError);
    expect(() => pollFds([{ fd: ev, events: 0x10000 }], 0)).toThrow(RangeError);
    expect(() => pollFds([], -2)).toThrow(RangeError);
    expect(() => createMemfd('', PAGE)).toThrow(RangeError);
    try {
      signalEventFd(ev, Number.NaN);
    } catch (e) {
      expect(e).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    }
  });
});
