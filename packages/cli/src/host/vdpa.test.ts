import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hostFixture, mdev, RawClient } from '../testing/host';
import { featureNames } from './vdpa';

const { paths, host } = hostFixture();

const VENDOR_VF = fileURLToPath(
  new URL('../../../../examples/vendor-vf/src/mdev-driver.ts', import.meta.url),
);

describe('vdpa verbs against a running host', () => {
  it('names features as vdpa prints them, lowest bit first', () => {
    const bits = [3, 5, 16, 28, 29, 32, 33, 50].reduce((f, b) => f | (1n << BigInt(b)), 0n);
    expect(featureNames(bits)).toEqual([
      'MTU',
      'MAC',
      'STATUS',
      'RING_INDIRECT_DESC',
      'RING_EVENT_IDX',
      'VERSION_1',
      'ACCESS_PLATFORM',
      'bit_50',
    ]);
  });

  it('dev add with mac and mtu reaches the config space; show, config show, del', async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = ['--control', control];
    expect((await mdev(['mgmtdev', 'show', ...c])).out).toBe(
      'mvnet_loopback:\n  supported_classes net\n',
    );
    const add = ['dev', 'add', 'name', 'vdpa0', 'mgmtdev', 'mvnet_loopback'];
    expect(await mdev([...add, 'mac', '02:11:22:33:44:55', 'mtu', '9000', ...c])).toEqual({
      code: 0,
      out: '',
      err: '',
    });
    const cfg = await mdev(['dev', 'config', 'show', 'vdpa0', ...c]);
    expect(cfg.out).toMatch(
      /^vdpa0: mac 02:11:22:33:44:55 link up link_announce false mtu 9000\n {2}negotiated_features\b/,
    );
    // virtio-net bound the device on the host and negotiated with it.
    const j = JSON.parse((await mdev(['dev', 'config', 'show', 'vdpa0', '-j', ...c])).out);
    expect(j.config.vdpa0).toMatchObject({ mac: '02:11:22:33:44:55', link: 'up', mtu: 9000 });
    expect(j.config.vdpa0.negotiated_features).toEqual(
      expect.arrayContaining(['MAC', 'MTU', 'STATUS', 'VERSION_1', 'ACCESS_PLATFORM']),
    );
    // A second device without attributes: a random unicast MAC and the default MTU.
    expect(
      (await mdev(['dev', 'add', 'name', 'vdpa1', 'mgmtdev', 'mvnet_loopback', ...c])).code,
    ).toBe(0);
    const j1 = JSON.parse((await mdev(['dev', 'config', 'show', 'vdpa1', '-j', ...c])).out);
    expect(j1.config.vdpa1.mtu).toBe(1500);
    expect(j1.config.vdpa1.mac).not.toBe('02:11:22:33:44:55');

    const shown = JSON.parse((await mdev(['dev', 'show', '-j', ...c])).out);
    expect(Object.keys(shown.dev)).toEqual(['vdpa0', 'vdpa1']);
    expect(shown.dev.vdpa0).toMatchObject({
      type: 'network',
      mgmtdev: 'mvnet_loopback',
      vendor_id: 0,
      max_vq_size: 256,
    });
    // The device is an mdev like any other: mdevctl's list shows it.
    expect((await mdev(['list', ...c])).out).toContain(`${shown.dev.vdpa0.uuid} mvnet_loopback`);
    expect((await mdev(['dev', 'show', 'vdpa0', ...c])).out).toBe(
      'vdpa0: type network mgmtdev mvnet_loopback vendor_id 0 max_vq_size 256 ' +
        `uuid ${shown.dev.vdpa0.uuid}\n`,
    );

    // One queue's counters: 0 receives, 1 sends (no frame has moved yet).
    expect((await mdev(['dev', 'vstats', 'show', 'vdpa0', 'qidx', '0', ...c])).out).toBe(
      'vdpa0: queue_index 0 queue_type rx\n  rx_bytes 0 rx_packets 0 rx_truncated 0\n',
    );
    const tx = JSON.parse(
      (await mdev(['dev', 'vstats', 'show', 'vdpa0', 'qidx', '1', '-j', ...c])).out,
    );
    expect(tx).toEqual({
      vstats: {
        vdpa0: {
          queue_index: 1,
          queue_type: 'tx',
          counters: { tx_packets: 0, tx_bytes: 0, tx_dropped: 0 },
        },
      },
    });
    const q2 = await mdev(['dev', 'vstats', 'show', 'vdpa0', 'qidx', '2', ...c]);
    expect(q2.code).toBe(1);
    expect(q2.err).toMatch(/EINVAL/);

    const dup = await mdev([...add, ...c]);
    expect(dup.code).toBe(1);
    expect(dup.err).toMatch(/EEXIST/);
    expect((await mdev(['dev', 'del', 'vdpa0', ...c])).code).toBe(0);
    expect(Object.keys(JSON.parse((await mdev(['dev', 'show', '-j', ...c])).out).dev)).toEqual([
      'vdpa1',
    ]);
    expect((await mdev(['list', ...c])).out).not.toContain(shown.dev.vdpa0.uuid);
    // Stopped another way, the device's name goes with it.
    expect((await mdev(['stop', '-u', shown.dev.vdpa1.uuid, ...c])).code).toBe(0);
    expect((await mdev(['dev', 'show', ...c])).out).toBe('');
  });

  it("dev add with mac and mtu reaches a vendor-vf VF's config space (a --driver parent)", async () => {
    const { control, config } = paths();
    await host(control, config, ['--driver', VENDOR_VF]);
    const c = ['--control', control];
    expect((await mdev(['mgmtdev', 'show', ...c])).out).toContain('vendor_vf:\n');
    const add = ['dev', 'add', 'name', 'vf0', 'mgmtdev', 'vendor_vf'];
    expect((await mdev([...add, 'mac', '02:aa:bb:cc:dd:01', 'mtu', '4000', ...c])).code).toBe(0);
    const j = JSON.parse((await mdev(['dev', 'config', 'show', 'vf0', '-j', ...c])).out);
    expect(j.config.vf0).toMatchObject({ mac: '02:aa:bb:cc:dd:01', link: 'up', mtu: 4000 });
    expect(j.config.vf0.negotiated_features).toEqual(expect.arrayContaining(['MAC', 'MTU']));
    // A definition's attributes go the same way when it starts.
    const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';
    const vf = ['-p', 'vendor_vf', '-t', 'vendor_vf-net'];
    expect((await mdev(['define', '-u', U, ...vf, ...c])).code).toBe(0);
    const mac = ['--addattr', 'mac', '--value', '02:aa:bb:cc:dd:02'];
    expect((await mdev(['modify', '-u', U, ...mac, ...c])).code).toBe(0);
    expect((await mdev(['start', '-u', U, ...c])).code).toBe(0);
    expect((await mdev(['dev', 'config', 'show', U, ...c])).out).toMatch(
      new RegExp(`^${U}: mac 02:aa:bb:cc:dd:02 link up link_announce false mtu 1500\n`),
    );
    // The VF checks what it is given: a multicast MAC, an MTU under 68.
    const bad = await mdev([
      'dev',
      'add',
      'name',
      'vf1',
      'mgmtdev',
      'vendor_vf',
      'mtu',
      '67',
      ...c,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/MTU 67 is not 68 to 65535/);
    const multicast = [
      'dev',
      'add',
      'name',
      'vf1',
      'mgmtdev',
      'vendor_vf',
      'mac',
      '01:00:00:00:00:01',
    ];
    expect((await mdev([...multicast, ...c])).err).toMatch(/unicast/);
  });

  it('a MAC given to a creation that fails is not given to the next creation of the UUID', async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = ['--control', control];
    const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
    const mvnet = ['-p', 'mvnet_loopback', '-t', 'mvnet_loopback-virtio'];
    expect((await mdev(['define', '-u', U, ...mvnet, ...c])).code).toBe(0);
    const mac = ['--addattr', 'mac', '--value', '02:00:00:00:00:42'];
    expect((await mdev(['modify', '-u', U, ...mac, ...c])).code).toBe(0);
    // Every one of mvnet_loopback's 64 instances in use: the start fails (ENOSPC).
    const client = new RawClient(control);
    const args = { parent: 'mvnet_loopback', type: 'mvnet_loopback-virtio' };
    for (let id = 0; id < 64; id++)
      client.send(`${JSON.stringify({ version: 1, id, verb: 'start', args })}\n`);
    const started: string[] = [];
    for (let id = 0; id < 64; id++)
      started.push(((await client.reply())!.result as { uuid: string }).uuid);
    client.close();
    const full = await mdev(['start', '-u', U, ...c]);
    expect(full.code).toBe(1);
    expect(full.err).toMatch(/ENOSPC/);
    // Room again, and the definition without its MAC: the device gets a MAC of its own.
    expect((await mdev(['stop', '-u', started[0]!, ...c])).code).toBe(0);
    expect((await mdev(['modify', '-u', U, '--delattr', ...c])).code).toBe(0);
    expect((await mdev(['start', '-u', U, ...c])).code).toBe(0);
    const cfg = JSON.parse((await mdev(['dev', 'config', 'show', U, '-j', ...c])).out);
    expect(cfg.config[U].mac).not.toBe('02:00:00:00:00:42');
  });

  it('refuses what it cannot do with an error, and a command line it cannot run with exit 2', async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = ['--control', control];
    const add = ['dev', 'add', 'name', 'v'];
    for (const [args, code] of [
      [[...add, 'mgmtdev', 'mtty'], 'ENODEV'],
      [[...add, 'mgmtdev', 'nope'], 'ENODEV'],
      [[...add, 'mgmtdev', 'mvnet_loopback', 'mac', '01:00:00:00:00:01'], 'EINVAL'],
      [[...add, 'mgmtdev', 'mvnet_loopback', 'mac', 'zz'], 'EINVAL'],
      [[...add, 'mgmtdev', 'mvnet_loopback', 'mtu', '67'], 'EINVAL'],
      [['dev', 'add', 'name', 'a/b', 'mgmtdev', 'mvnet_loopback'], 'EINVAL'],
      [['dev', 'config', 'show', 'nope'], 'ENODEV'],
      [['dev', 'del', 'nope'], 'ENODEV'],
    ] as [string[], string][]) {
      const r = await mdev([...args, ...c]);
      expect({ args, code: r.code, err: r.err.includes(code) }).toEqual({
        args,
        code: 1,
        err: true,
      });
    }
    expect((await mdev(['dev', 'show', ...c])).out).toBe('');
    for (const args of [
      ['dev'],
      ['dev', 'frob'],
      ['dev', 'add', 'name', 'v'],
      ['dev', 'add', 'name', 'v', 'mgmtdev'],
      ['dev', 'add', 'name', 'v', 'name', 'w', 'mgmtdev', 'm'],
      ['dev', 'add', 'name', 'v', 'mgmtdev', 'm', 'color', 'red'],
      ['dev', 'add', 'name', 'v', 'mgmtdev', 'm', 'mtu', '1e3'],
      ['dev', 'config', 'show'],
      ['dev', 'del'],
      ['dev', 'vstats', 'show', 'v'],
      ['dev', 'vstats', 'show', 'v', 'qidx', '-1'],
      ['dev', 'show', '--bogus'],
      ['mgmtdev', 'frob'],
    ]) {
      expect({ args, code: (await mdev([...args, ...c])).code }).toEqual({ args, code: 2 });
    }
  });
});
