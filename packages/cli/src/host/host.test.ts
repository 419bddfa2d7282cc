import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostFixture, mdev, RawClient, spawnHost, stopHost } from '../testing/host';
import { checkPeer, loadPeerCredentials, socketFd, socketPeerCredentials } from './server';

const { paths, host } = hostFixture();

// The peer checks run in this process too (as the host runs them): the SO_PEERCRED reader.
beforeAll(loadPeerCredentials);

const MVNET = ['-p', 'mvnet_loopback', '-t', 'mvnet_loopback-virtio'];
const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

describe('mdev host: the control socket', () => {
  it('is owner-only: socket mode 0600 in a folder of mode 0700, made by the host', async () => {
    const { control, config } = paths();
    await host(control, config);
    expect(statSync(control).isSocket()).toBe(true);
    expect(statSync(control).mode & 0o777).toBe(0o600);
    expect(statSync(join(control, '..')).mode & 0o777).toBe(0o700);
  });

  it('refuses to start on a folder others can enter (exit 2)', async () => {
    const { control, config } = paths();
    mkdirSync(join(control, '..'), { mode: 0o755 });
    chmodSync(join(control, '..'), 0o755);
    const h = spawnHost(['--control', control, '--config', config]);
    const { code } = await h.exited;
    expect(code).toBe(2);
    expect(h.stderr()).toMatch(/must be yours and closed to others/);
  });

  it('replaces a stale socket (nobody listening); a live one is an error, exit 2', async () => {
    const { control, config } = paths();
    const first = await host(control, config);
    // A second host on a live socket: refused, the first keeps running.
    const second = spawnHost(['--control', control, '--config', config]);
    expect((await second.exited).code).toBe(2);
    expect(second.stderr()).toMatch(/a host is listening on/);
    expect((await mdev(['list', '--control', control])).code).toBe(0);
    // Killed: its socket file stays behind, and nobody listens on it.
    expect((await stopHost(first, 'SIGKILL')).signal).toBe('SIGKILL');
    expect(statSync(control).isSocket()).toBe(true);
    await host(control, config);
    expect((await mdev(['list', '--control', control])).code).toBe(0);
  });

  // Another user's client, where the tests run as root and can start one as nobody (65534).
  const asRoot = process.getuid?.() === 0;
  it.skipIf(!asRoot)('a client of another user cannot connect (EACCES)', async () => {
    const { control, config, dir } = paths();
    // Every folder above the host's own is open to nobody: only the host's folder (0700) and
    // socket (0600) keep it out.
    chmodSync(join(dir, '..'), 0o755);
    chmodSync(dir, 0o755);
    await host(control, config);
    // The client is python3, not this node: node may live in a folder closed to nobody (CI
    // installs it under root's home).
    const client = [
      'import errno, socket, sys',
      's = socket.socket(socket.AF_UNIX)',
      'try:',
      '    s.connect(sys.argv[1]); print("connected")',
      'except OSError as e:',
      '    print(errno.errorcode[e.errno])',
    ].join('\n');
    const r = spawnSync('python3', ['-c', client, control], {
      uid: 65534,
      gid: 65534,
      encoding: 'utf8',
    });
    expect(r.error).toBeUndefined();
    expect(r.stdout.trim()).toBe('EACCES');
    // The host's own user still can.
    expect((await mdev(['list', '--control', control])).code).toBe(0);
  });

  // SO_PEERCRED: a client of another user that got through the file modes is still refused.
  it.skipIf(!asRoot)(
    'refuses a client of another uid by its SO_PEERCRED, and says so',
    async () => {
      const { control, config, dir } = paths();
      chmodSync(join(dir, '..'), 0o755);
      chmodSync(dir, 0o755);
      const h = await host(control, config);
      // Someone opened the socket to everybody: nobody (65534) can connect(2) now.
      chmodSync(join(control, '..'), 0o755);
      chmodSync(control, 0o666);
      const client = [
        'import socket, sys',
        's = socket.socket(socket.AF_UNIX)',
        's.connect(sys.argv[1])',
        's.sendall(b\'{"version":1,"id":1,"verb":"list"}\\n\')',
        'data = b""',
        'while True:',
        '    chunk = s.recv(4096)',
        '    if not chunk: break',
        '    data += chunk',
        'sys.stdout.write(data.decode())',
      ].join('\n');
      const r = spawnSync('python3', ['-c', client, control], {
        uid: 65534,
        gid: 65534,
        encoding: 'utf8',
      });
      expect(r.error).toBeUndefined();
      expect(r.status).toBe(0);
      const reply = JSON.parse(r.stdout.trim());
      expect(reply).toMatchObject({ ok: false, error: { code: 'EACCES' } });
      expect(reply.error.message).toMatch(
        /^refused: uid 65534 \(pid \d+\) is not the host's user \(uid 0\)$/,
      );
      await h.waitFor(/client refused: uid 65534 \(pid \d+\) is not the host's user/);
    },
  );

  it("the peer check refuses a uid not the host's, and credentials it cannot read", async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = new RawClient(control);
    await new Promise((resolve) => c.socket.once('connect', resolve));
    const me = process.getuid!();
    const other = me === 0 ? 1000 : 0;
    const as = (uid: number) => () => ({ pid: 4242, uid, gid: uid });
    expect(checkPeer(c.socket, control, as(me))).toEqual({ allowed: true });
    expect(checkPeer(c.socket, control, as(other))).toEqual({
      allowed: false,
      reason: `uid ${other} (pid 4242) is not the host's user (uid ${me})`,
    });
    const unreadable = () => {
      throw Object.assign(new Error('EBADF: bad file descriptor'), { code: 'EBADF' });
    };
    expect(checkPeer(c.socket, control, unreadable)).toEqual({
      allowed: false,
      reason: "cannot read the client's credentials: EBADF: bad file descriptor",
    });
    // The real credentials of a connected socket: this process's, the host's user.
    expect(socketPeerCredentials(c.socket).uid).toBe(me);
    c.close();
    await new Promise((resolve) => c.socket.once('close', resolve));
    expect(() => socketFd(c.socket)).toThrow(/EBADF/);
  });

  it('the peer check allows a client while the socket and its folder are private', async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = new RawClient(control);
    expect(checkPeer(c.socket, control)).toEqual({ allowed: true });
    chmodSync(control, 0o666);
    expect(checkPeer(c.socket, control).allowed).toBe(false);
    chmodSync(control, 0o600);
    chmodSync(join(control, '..'), 0o755);
    expect(checkPeer(c.socket, control).allowed).toBe(false);
    // The host applies the check to every client it accepts: this one is refused.
    const refused = new RawClient(control);
    expect(await refused.reply()).toMatchObject({ ok: false, error: { code: 'EACCES' } });
    await refused.ended();
    chmodSync(join(control, '..'), 0o700);
    c.close();
  });

  it('SIGTERM stops every device through sysfs, removes the socket and exits 0', async () => {
    const { control, config } = paths();
    const h = await host(control, config);
    expect((await mdev(['start', '-u', U1, ...MVNET, '--control', control])).code).toBe(0);
    const tty = await mdev(['start', '-p', 'mtty', '-t', 'mtty-2', '--control', control]);
    expect(tty.code).toBe(0);
    const ttyUuid = tty.out.trim();
    const { code, signal } = await stopHost(h, 'SIGTERM');
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(h.stderr()).toContain(`stopped ${U1}`);
    expect(h.stderr()).toContain(`stopped ${ttyUuid}`);
    expect(h.stderr()).not.toMatch(/failed/);
    expect(existsSync(control)).toBe(false);
  });

  it('SIGINT (Ctrl-C) stops it the same way, exit 0', async () => {
    const { control, config } = paths();
    const h = await host(control, config);
    expect((await mdev(['start', '-u', U1, ...MVNET, '--control', control])).code).toBe(0);
    expect(await stopHost(h, 'SIGINT')).toEqual({ code: 0, signal: null });
    expect(h.stderr()).toContain(`stopped ${U1}`);
    expect(existsSync(control)).toBe(false);
  });
});

describe('mdev host: hostile clients get error replies, and the host goes on', () => {
  it('answers every malformed request with an error and the next good one with a result', async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = new RawClient(control);
    const cases: [string, string][] = [
      ['{not json\n', 'EPROTO'],
      ['[1,2,3]\n', 'EPROTO'],
      ['"a string"\n', 'EPROTO'],
      ['null\n', 'EPROTO'],
      ['{"verb":"list"}\n', 'EPROTONOSUPPORT'],
      ['{"version":2,"verb":"list"}\n', 'EPROTONOSUPPORT'],
      ['{"version":"1","verb":"list"}\n', 'EPROTONOSUPPORT'],
      ['{"version":1}\n', 'EOPNOTSUPP'],
      ['{"version":1,"verb":"format_disk"}\n', 'EOPNOTSUPP'],
      ['{"version":1,"verb":"constructor"}\n', 'EOPNOTSUPP'],
      ['{"version":1,"verb":"__proto__"}\n', 'EOPNOTSUPP'],
      ['{"version":1,"verb":["list"]}\n', 'EOPNOTSUPP'],
      ['{"version":1,"verb":"list","args":[]}\n', 'EINVAL'],
      ['{"version":1,"verb":"list","args":"x"}\n', 'EINVAL'],
      ['{"version":1,"verb":"list","args":{"defined":"yes"}}\n', 'EINVAL'],
      ['{"version":1,"verb":"list","args":{"__proto__":{"x":1}}}\n', 'EINVAL'],
      ['{"version":1,"verb":"start","args":{"uuid":42}}\n', 'EINVAL'],
      ['{"version":1,"verb":"define","args":{"attrs":[["a"]]}}\n', 'EINVAL'],
      ['{"version":1,"verb":"modify","args":{"uuid":"x","index":-1}}\n', 'EINVAL'],
      ['{"version":1,"verb":"stop","args":{"uuid":"not-a-uuid"}}\n', 'EINVAL'],
      [
        '{"version":1,"verb":"stop","args":{"uuid":"83b8f4f2-509f-382f-3c1e-e6bfe0fa1fff"}}\n',
        'ENODEV',
      ],
      ['{"version":1,"verb":"start","args":{"parent":"../../etc","type":"x"}}\n', 'EINVAL'],
      ['{"version":1,"verb":"start","args":{"parent":"nobody","type":"x"}}\n', 'ENODEV'],
      [`{"version":1,"verb":"define","args":{"parent":"..","type":"x"}}\n`, 'EINVAL'],
      ['\xff\xfe\n', 'EPROTO'],
    ];
    for (const [line, code] of cases) {
      c.send(line);
      const reply = await c.reply();
      expect({ line, reply }).toMatchObject({
        line,
        reply: { version: 1, ok: false, error: { code } },
      });
    }
    // The id of a request that has one comes back with its error.
    c.send('{"version":1,"id":"abc","verb":"nope"}\n');
    expect(await c.reply()).toMatchObject({ id: 'abc', ok: false });
    // Two requests in one write, and one split across writes: each answered, in order.
    c.send('{"version":1,"id":1,"verb":"ping"}\n{"version":1,"id":2,"verb":"list"}\n{"vers');
    c.send('ion":1,"id":3,"verb":"list","args":{"defined":true}}\n');
    expect(await c.reply()).toMatchObject({ id: 1, ok: true });
    expect(await c.reply()).toMatchObject({ id: 2, ok: true, result: [] });
    expect(await c.reply()).toMatchObject({ id: 3, ok: true, result: [] });
    c.close();
  });

  it('ends a connection whose line passes 64 KiB (EMSGSIZE), and serves the others', async () => {
    const { control, config } = paths();
    await host(control, config);
    const big = new RawClient(control);
    big.send(`{"version":1,"verb":"list","args":{"uuid":"${'x'.repeat(64 * 1024)}`);
    expect(await big.reply()).toMatchObject({ ok: false, error: { code: 'EMSGSIZE' } });
    await big.ended();
    // A line of exactly 64 KiB is still read (and refused for what it says, not its size).
    const edge = new RawClient(control);
    const head = '{"version":1,"verb":"list","args":{"parent":"';
    const tail = '"}}';
    edge.send(`${head}${'p'.repeat(64 * 1024 - head.length - tail.length)}${tail}\n`);
    expect(await edge.reply()).toMatchObject({ ok: true, result: [] });
    edge.close();
    // Clients that leave mid-line or never send anything do no harm.
    const half = new RawClient(control);
    half.send('{"version":1,"verb":"li');
    half.close();
    const idle = new RawClient(control);
    const ok = await mdev(['list', '--control', control]);
    expect(ok.code).toBe(0);
    idle.close();
  });
});
