import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hostFixture, mdev, spawnHost, startHost } from '../testing/host';
import { HostConfigError, readHostConfig } from './config';

const { paths } = hostFixture();

const VENDOR_VF = fileURLToPath(
  new URL('../../../../examples/vendor-vf/src/mdev-driver.ts', import.meta.url),
);

describe('mdev host --config-file: the host settings file', () => {
  it('reads drivers, control, definitions and http; relative paths from its folder', () => {
    const { dir } = paths();
    const file = join(dir, 'host.json');
    writeFileSync(
      file,
      JSON.stringify({
        drivers: ['./drivers/card.js', '@vendor/mdev-driver', '/opt/card.js'],
        control: 'run/control.sock',
        definitions: '/etc/mdev',
        http: '127.0.0.1:8080',
      }),
    );
    expect(readHostConfig(file)).toEqual({
      drivers: [join(dir, 'drivers/card.js'), '@vendor/mdev-driver', '/opt/card.js'],
      control: join(dir, 'run/control.sock'),
      definitions: '/etc/mdev',
      http: '127.0.0.1:8080',
    });
    writeFileSync(file, '{}');
    expect(readHostConfig(file)).toEqual({ drivers: [] });
  });

  it('names the file and the field of what it cannot use', () => {
    const { dir } = paths();
    const file = join(dir, 'host.json');
    const cases: [string, RegExp][] = [
      ['{"drivers": "x"', /not JSON/],
      ['[]', /not a JSON object/],
      ['null', /not a JSON object/],
      [
        '{"driver": ["x"]}',
        /unknown field "driver" \(known: drivers, control, definitions, http\)/,
      ],
      ['{"drivers": "card.js"}', /field "drivers" must be a list/],
      ['{"drivers": ["a", 7]}', /field "drivers"\[1\] must be a module name or path/],
      ['{"drivers": [""]}', /field "drivers"\[0\]/],
      ['{"control": 5}', /field "control" must be a non-empty string/],
      ['{"definitions": ""}', /field "definitions" must be a non-empty string/],
      ['{"http": "0.0.0.0:80"}', /field "http" must be a loopback address and a port/],
      ['{"http": 8080}', /field "http" must be a non-empty string/],
    ];
    for (const [text, why] of cases) {
      writeFileSync(file, text);
      let err: unknown;
      try {
        readHostConfig(file);
      } catch (e) {
        err = e;
      }
      expect({ text, err }).toMatchObject({ text, err: expect.any(HostConfigError) });
      expect((err as Error).message.startsWith(`${file}: `)).toBe(true);
      expect((err as Error).message).toMatch(why);
    }
    expect(() => readHostConfig(join(dir, 'missing.json'))).toThrow(
      `${join(dir, 'missing.json')}: cannot read it (ENOENT)`,
    );
  });

  it('a host started with it loads its drivers and listens where it says; exit 2 for a bad one', async () => {
    const { dir, config } = paths();
    const file = join(dir, 'host.json');
    mkdirSync(join(dir, 'run'), { mode: 0o700 });
    writeFileSync(
      file,
      JSON.stringify({ drivers: [VENDOR_VF], control: 'run/ctl.sock', http: '127.0.0.1:0' }),
    );
    const control = join(dir, 'run', 'ctl.sock');
    const fromFile = spawnHost(['--config-file', file, '--config', config]);
    await fromFile.waitFor(/listening on /);
    try {
      expect(fromFile.stderr()).toMatch(/driver \S+mdev-driver\.ts loaded/);
      expect(fromFile.stderr()).toMatch(/status page on http:\/\/127\.0\.0\.1:\d+\//);
      expect(fromFile.stderr()).toContain(`listening on ${control}`);
      const types = await mdev(['types', '-p', 'vendor_vf', '--control', control]);
      expect(types.out).toMatch(/^vendor_vf\n {2}vendor_vf-net\n/);
    } finally {
      fromFile.child.kill('SIGTERM');
      await fromFile.exited;
    }
    // The command line wins: --control elsewhere.
    const other = join(paths().dir, 'run', 'c.sock');
    const h2 = await startHost(other, config, ['--config-file', file]);
    try {
      expect(h2.stderr()).toContain(`listening on ${other}`);
    } finally {
      h2.child.kill('SIGTERM');
      await h2.exited;
    }
    writeFileSync(file, '{"drivers": [1]}');
    const bad = spawnHost(['--config-file', file, '--config', config]);
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr()).toBe(
      `mdev host: ${file}: field "drivers"[0] must be a module name or path\n`,
    );
  });
});
