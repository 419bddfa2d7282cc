import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostFixture, mdev, PKG, RawClient, stopHost } from '../testing/host';
import { parseDefinitionJson, UUID_RE } from './store';

const { paths, host } = hostFixture();

const MVNET_PARENT = 'mvnet_loopback';
const MVNET_TYPE = 'mvnet_loopback-virtio';
const MVNET = ['-p', MVNET_PARENT, '-t', MVNET_TYPE];
const U1 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const U2 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1002';
const U3 = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1003';

describe('mdevctl verbs against a running host', () => {
  it('define, list, start, modify, stop, undefine as mdevctl spells and prints them', async () => {
    const { control, config, dir } = paths();
    await host(control, config);
    const c = ['--control', control];
    const file = join(config, MVNET_PARENT, U1);

    expect(await mdev(['define', '-u', U1, ...MVNET, '--auto', ...c])).toEqual({
      code: 0,
      out: '',
      err: '',
    });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
      mdev_type: MVNET_TYPE,
      start: 'auto',
      attrs: [],
    });
    expect((await mdev(['list', '--defined', ...c])).out).toBe(
      `${U1} ${MVNET_PARENT} ${MVNET_TYPE} auto\n`,
    );
    expect((await mdev(['list', ...c])).out).toBe('');
    // Defined once: a second define of the UUID is refused.
    const again = await mdev(['define', '-u', U1, ...MVNET, ...c]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/EEXIST/);

    expect((await mdev(['start', '-u', U1, ...c])).code).toBe(0);
    expect((await mdev(['list', ...c])).out).toBe(
      `${U1} ${MVNET_PARENT} ${MVNET_TYPE} auto (defined)\n`,
    );
    expect((await mdev(['list', '-d', ...c])).out).toBe(
      `${U1} ${MVNET_PARENT} ${MVNET_TYPE} auto (active)\n`,
    );
    const twice = await mdev(['start', '-u', U1, ...c]);
    expect(twice.code).toBe(1);
    expect(twice.err).toMatch(/EEXIST/);

    expect((await mdev(['modify', '-u', U1, '--manual', ...c])).code).toBe(0);
    expect((await mdev(['modify', '-u', U1, '--addattr', 'a', '--value', '1', ...c])).code).toBe(0);
    expect(
      (await mdev(['modify', '-u', U1, '--addattr', 'b', '--value', '2', '--index', '0', ...c]))
        .code,
    ).toBe(0);
    expect((await mdev(['list', '-d', '-v', ...c])).out).toBe(
      `${U1} ${MVNET_PARENT} ${MVNET_TYPE} manual (active)\n` +
        '  Attrs:\n    @{0}: {"b":"2"}\n    @{1}: {"a":"1"}\n',
    );
    const dumped = await mdev(['list', '-d', '-u', U1, '--dumpjson', ...c]);
    expect(JSON.parse(dumped.out)).toEqual({
      mdev_type: MVNET_TYPE,
      start: 'manual',
      attrs: [{ b: '2' }, { a: '1' }],
    });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(JSON.parse(dumped.out));
    expect((await mdev(['modify', '-u', U1, '--delattr', '--index', '0', ...c])).code).toBe(0);
    expect(JSON.parse(readFileSync(file, 'utf8')).attrs).toEqual([{ a: '1' }]);
    const badIndex = await mdev(['modify', '-u', U1, '--delattr', '--index', '5', ...c]);
    expect(badIndex.code).toBe(1);
    expect(badIndex.err).toMatch(/EINVAL/);

    expect((await mdev(['stop', '-u', U1, ...c])).code).toBe(0);
    expect((await mdev(['list', ...c])).out).toBe('');
    const stopped = await mdev(['stop', '-u', U1, ...c]);
    expect(stopped.code).toBe(1);
    expect(stopped.err).toMatch(/ENODEV/);
    expect((await mdev(['list', '-d', ...c])).out).toBe(
      `${U1} ${MVNET_PARENT} ${MVNET_TYPE} manual\n`,
    );

    expect((await mdev(['undefine', '-u', U1, ...c])).code).toBe(0);
    expect(existsSync(file)).toBe(false);
    expect((await mdev(['list', '-d', ...c])).out).toBe('');
    const gone = await mdev(['undefine', '-u', U1, ...c]);
    expect(gone.code).toBe(1);
    expect(gone.err).toMatch(/ENOENT/);

    // Without -u a UUID is made and printed; --jsonfile takes mdevctl's JSON.
    const json = join(dir, 'tty.json');
    writeFileSync(json, JSON.stringify({ mdev_type: 'mtty-2', start: 'manual', attrs: [] }));
    const made = await mdev(['define', '-p', 'mtty', '--jsonfile', json, ...c]);
    expect(made.code).toBe(0);
    const uuid = made.out.trim();
    expect(uuid).toMatch(UUID_RE);
    expect(JSON.parse(readFileSync(join(config, 'mtty', uuid), 'utf8')).mdev_type).toBe('mtty-2');

    // A transient device: running, not defined; dumped as mdevctl groups devices by parent.
    const t = await mdev(['start', ...MVNET, ...c]);
    expect(t.code).toBe(0);
    const tuuid = t.out.trim();
    expect((await mdev(['list', ...c])).out).toBe(
      `${tuuid} ${MVNET_PARENT} ${MVNET_TYPE} manual\n`,
    );
    expect((await mdev(['start', '-u', uuid, ...c])).code).toBe(0);
    expect(JSON.parse((await mdev(['list', '--dumpjson', ...c])).out)).toEqual([
      {
        [MVNET_PARENT]: [{ [tuuid]: { mdev_type: MVNET_TYPE, start: 'manual', attrs: [] } }],
        mtty: [{ [uuid]: { mdev_type: 'mtty-2', start: 'manual', attrs: [] } }],
      },
    ]);
    expect((await mdev(['list', '-p', 'mtty', ...c])).out).toBe(
      `${uuid} mtty mtty-2 manual (defined)\n`,
    );
  });

  it('an attribute the device refuses fails the start and leaves no device behind', async () => {
    const { control, config, dir } = paths();
    await host(control, config);
    const c = ['--control', control];
    const json = join(dir, 'bad-attr.json');
    writeFileSync(
      json,
      JSON.stringify({ mdev_type: MVNET_TYPE, start: 'manual', attrs: [{ no_such: '1' }] }),
    );
    expect(
      (await mdev(['define', '-u', U1, '-p', MVNET_PARENT, '--jsonfile', json, ...c])).code,
    ).toBe(0);
    const r = await mdev(['start', '-u', U1, ...c]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ENOENT/);
    expect((await mdev(['list', ...c])).out).toBe('');
  });

  it('types: the host parents, filtered by -p, in text and in mdevctl JSON', async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = ['--control', control];
    const text = await mdev(['types', '-p', 'mtty', ...c]);
    expect(text.out).toBe(
      'mtty\n' +
        '  mtty-1\n    Available instances: 24\n    Device API: vfio-pci\n' +
        '    Name: Single port serial\n' +
        '  mtty-2\n    Available instances: 12\n    Device API: vfio-pci\n' +
        '    Name: Dual port serial\n',
    );
    expect((await mdev(['start', ...MVNET, ...c])).code).toBe(0);
    const json = JSON.parse((await mdev(['types', '-p', MVNET_PARENT, '--dumpjson', ...c])).out);
    expect(json).toEqual([
      {
        [MVNET_PARENT]: [
          {
            [MVNET_TYPE]: {
              available_instances: 63,
              device_api: 'virtio-mdev',
              name: 'virtio-net',
              description: 'virtio-net loopback: TX frames come back on RX',
            },
          },
        ],
      },
    ]);
  });

  it('without a host: a clear error, exit 1; a command line it cannot run: exit 2', async () => {
    const { control } = paths();
    const c = ['--control', control];
    for (const args of [['list'], ['start', '-u', U1], ['types']]) {
      const r = await mdev([...args, ...c]);
      expect(r.code).toBe(1);
      expect(r.err).toContain(`no host is listening on ${control}`);
    }
    for (const args of [
      ['define', '-p', MVNET_PARENT],
      ['define', '-u', 'nope'],
      ['modify', '--auto'],
      ['modify', '-u', U1, '--auto', '--manual'],
      ['modify', '-u', U1, '--value', '1'],
      ['modify', '-u', U1, '--delattr', '--index', '-1'],
      ['stop'],
      ['undefine'],
      ['start'],
      ['list', '--bogus'],
      ['types', '--json', '--dumpjson'],
    ]) {
      const r = await mdev([...args, ...c]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
    }
  });

  it('concurrent clients each get their own device', async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = ['--control', control];
    const runs = await Promise.all(
      Array.from({ length: 8 }, () => mdev(['start', '-p', 'mtty', '-t', 'mtty-1', ...c])),
    );
    expect(runs.map((r) => r.code)).toEqual(Array(8).fill(0));
    const uuids = runs.map((r) => r.out.trim());
    expect(new Set(uuids).size).toBe(8);
    const listed = (await mdev(['list', ...c])).out.trim().split('\n');
    expect(listed.map((l) => l.split(' ')[0]).sort()).toEqual([...uuids].sort());
  });
});

describe('definitions persist across host restarts', () => {
  it('a device defined with --auto is running again, with its UUID, after a restart', async () => {
    const { control, config } = paths();
    const c = ['--control', control];
    const first = await host(control, config);
    expect((await mdev(['define', '-u', U1, ...MVNET, '--auto', ...c])).code).toBe(0);
    // mvnet_loopback takes `mac` and `mtu` as attributes given at creation.
    expect(
      (await mdev(['modify', '-u', U1, '--addattr', 'mac', '--value', '02:00:00:00:17:01', ...c]))
        .code,
    ).toBe(0);
    expect((await mdev(['define', '-u', U2, '-p', 'mtty', '-t', 'mtty-1', ...c])).code).toBe(0);
    expect((await stopHost(first, 'SIGTERM')).code).toBe(0);

    const second = await host(control, config);
    expect(second.stderr()).toContain(`started ${U1}`);
    const cfg = JSON.parse((await mdev(['dev', 'config', 'show', U1, '-j', ...c])).out);
    expect(cfg.config[U1]).toMatchObject({ mac: '02:00:00:00:17:01', mtu: 1500, link: 'up' });
    expect((await mdev(['list', ...c])).out).toBe(
      `${U1} ${MVNET_PARENT} ${MVNET_TYPE} auto (defined)\n`,
    );
    expect((await mdev(['list', '-d', ...c])).out).toBe(
      `${U2} mtty mtty-1 manual\n${U1} ${MVNET_PARENT} ${MVNET_TYPE} auto (active)\n`,
    );
  });

  it('reads a definition tree as mdevctl writes it; a malformed file is named, the rest load', async () => {
    const { control, config } = paths();
    mkdirSync(join(config, 'mtty'), { recursive: true });
    mkdirSync(join(config, MVNET_PARENT), { recursive: true });
    // As mdevctl writes it: pretty JSON, attrs a list of one-key objects.
    writeFileSync(
      join(config, MVNET_PARENT, U1),
      JSON.stringify({ mdev_type: MVNET_TYPE, start: 'auto', attrs: [] }, null, 2),
    );
    writeFileSync(join(config, 'mtty', U2), '{"mdev_type": "mtty-1", "start": ');
    writeFileSync(
      join(config, 'mtty', U3),
      JSON.stringify({ mdev_type: 'mtty-1', start: 'sometimes', attrs: [] }),
    );
    writeFileSync(join(config, 'mtty', 'README'), 'not a definition');
    const h = await host(control, config);
    expect(h.stderr()).toContain(`definition ${join(config, 'mtty', U2)} ignored`);
    expect(h.stderr()).toMatch(
      new RegExp(`definition ${join(config, 'mtty', U3)} ignored: "start"`),
    );
    expect(h.stderr()).not.toContain('README');
    expect((await mdev(['list', '-d', '--control', control])).out).toBe(
      `${U1} ${MVNET_PARENT} ${MVNET_TYPE} auto (active)\n`,
    );
  });

  it('a host killed (SIGKILL) in the middle of defines leaves every definition whole', async () => {
    const { control, config } = paths();
    const h = await host(control, config);
    const client = new RawClient(control);
    const uuids = Array.from({ length: 8 }, () => randomUUID());
    const value = 'v'.repeat(30 * 1024);
    // Definitions that are rewritten over and over, growing by 30 KiB a time, all in one burst:
    // the host is in the middle of writing files when it is killed.
    const requests = uuids.map((uuid, id) =>
      JSON.stringify({
        version: 1,
        id,
        verb: 'define',
        args: { uuid, parent: 'mtty', type: 'mtty-1' },
      }),
    );
    for (let i = 0; i < 1000; i++) {
      const args = { uuid: uuids[i % uuids.length], addattr: 'k', value };
      requests.push(JSON.stringify({ version: 1, id: requests.length, verb: 'modify', args }));
    }
    client.send(`${requests.join('\n')}\n`);
    let replied = 0;
    while (replied < 80) {
      expect(await client.reply()).toMatchObject({ ok: true });
      replied++;
    }
    h.child.kill('SIGKILL');
    expect((await h.exited).signal).toBe('SIGKILL');
    client.close();

    const names = readdirSync(join(config, 'mtty'));
    const defs = names.filter((f) => UUID_RE.test(f));
    expect(defs.sort()).toEqual([...uuids].sort());
    let attrs = 0;
    for (const f of defs) {
      const def = parseDefinitionJson(JSON.parse(readFileSync(join(config, 'mtty', f), 'utf8')));
      expect(def.type).toBe('mtty-1');
      for (const a of def.attrs) expect(a).toEqual(['k', value]);
      attrs += def.attrs.length;
    }
    // Every modify that was answered is on disk; the last ones may not have been made.
    expect(attrs).toBeGreaterThanOrEqual(replied - uuids.length);
    expect(attrs).toBeLessThan(requests.length - uuids.length);
    // Whatever else is there is a temporary file, which no reader takes for a definition.
    for (const f of names.filter((f) => !UUID_RE.test(f))) expect(f).toMatch(/^\..*\.tmp$/);

    const again = await host(control, config);
    expect(again.stderr()).not.toContain('ignored');
    const listed = (await mdev(['list', '-d', '--control', control])).out.trim().split('\n');
    expect(listed.length).toBe(uuids.length);
  });

  it('a writer killed (SIGKILL) in the middle of a write leaves the old definition whole', async () => {
    const { config } = paths();
    const child = spawn(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', 'src/testing/store-crash.ts', config, U1],
      { cwd: PKG, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    const signal = await new Promise((resolve) => child.on('close', (_code, sig) => resolve(sig)));
    expect(signal).toBe('SIGKILL');
    const def = parseDefinitionJson(JSON.parse(readFileSync(join(config, 'mtty', U1), 'utf8')));
    expect(def.attrs).toEqual([['version', 'old']]);
    // The half-written temporary file is left, under a name no reader takes for a definition.
    const names = readdirSync(join(config, 'mtty'));
    expect(names.filter((f) => UUID_RE.test(f))).toEqual([U1]);
  });
});
