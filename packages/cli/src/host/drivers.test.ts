import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hostFixture, mdev, PKG, stopHost } from '../testing/host';

const { paths, host } = hostFixture();

const fixture = (name: string) =>
  fileURLToPath(new URL(`../testing/drivers/${name}.ts`, import.meta.url));
const VENDOR_VF = fileURLToPath(
  new URL('../../../../examples/vendor-vf/src/mdev-driver.ts', import.meta.url),
);

describe('mdev host --driver: vendor parent drivers as modules', () => {
  it('reports a driver that throws (on import, in its init, in its parent) and goes on', async () => {
    const { control, config, dir } = paths();
    const drivers = ['throws-on-load', 'throws-in-init', 'parent-fails', 'no-such-driver'];
    const h = await host(
      control,
      config,
      drivers.flatMap((d) => [
        '--driver',
        d === 'no-such-driver' ? join(dir, 'nope.js') : fixture(d),
      ]),
    );
    const log = h.stderr();
    expect(log).toMatch(/driver \S+throws-on-load\.ts failed to load: this driver cannot load/);
    expect(log).toMatch(/driver \S+throws-in-init\.ts failed to load: no such card/);
    expect(log).toMatch(/driver \S+parent-fails\.ts loaded/);
    expect(log).toMatch(/parent broken_card failed to load: card broken_card does not answer/);
    expect(log).toMatch(/driver \S+nope\.js failed to load/);
    // The built-in parents are there, and the host serves.
    const c = ['--control', control];
    const types = JSON.parse((await mdev(['types', '--json', ...c])).out) as { parent: string }[];
    expect(new Set(types.map((t) => t.parent))).toEqual(
      new Set(['mbochs', 'mdpy', 'mtty', 'mvnet_loopback']),
    );
    expect(
      (await mdev(['start', '-p', 'mvnet_loopback', '-t', 'mvnet_loopback-virtio', ...c])).code,
    ).toBe(0);
    expect(await stopHost(h, 'SIGTERM')).toEqual({ code: 0, signal: null });
  });

  it('loads examples/vendor-vf: its parent, its type, its devices', async () => {
    const { control, config } = paths();
    const h = await host(control, config, ['--driver', VENDOR_VF]);
    const c = ['--control', control];
    const types = await mdev(['types', '-p', 'vendor_vf', ...c]);
    expect(types.out).toMatch(/^vendor_vf\n {2}vendor_vf-net\n/);
    const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
    expect(
      (await mdev(['define', '-u', U, '-p', 'vendor_vf', '-t', 'vendor_vf-net', '--auto', ...c]))
        .code,
    ).toBe(0);
    expect((await mdev(['start', '-u', U, ...c])).code).toBe(0);
    expect((await mdev(['list', ...c])).out).toBe(`${U} vendor_vf vendor_vf-net auto (defined)\n`);
    // SIGTERM stops the VF (its datapath thread too) and the host exits 0.
    expect(await stopHost(h, 'SIGTERM')).toEqual({ code: 0, signal: null });
    expect(h.stderr()).toContain(`stopped ${U}`);
    // Started again with the driver, the --auto VF is back.
    const _again = await host(control, config, ['--driver', VENDOR_VF]);
    expect((await mdev(['list', ...c])).out).toBe(`${U} vendor_vf vendor_vf-net auto (defined)\n`);
  });

  it('mdev pktgen --driver loads a vendor driver for --device, in a process of its own', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        execFile(
          process.execPath,
          ['--conditions=source', '--import', 'tsx', 'src/main.ts', 'pktgen', ...args],
          { cwd: PKG },
          (error, out, err) => resolve({ code: error ? Number(error.code) : 0, out, err }),
        );
      });
    const vf = await run([
      '--driver',
      VENDOR_VF,
      '--device',
      'vendor-vf',
      '--count',
      '2000',
      '--json',
    ]);
    // The driver loaded and frames went through the VF, none lost or corrupted. A loaded
    // machine can keep this thread off the CPU longer than the VF holds a frame for a receive
    // buffer; the VF then drops it, as a NIC does, and counts it: rx + dropped is every frame.
    expect(vf.code).toBe(0);
    const result = JSON.parse(vf.out);
    expect(result).toMatchObject({ parent: 'vendor-vf', tx: 2000, lost: 0, corrupted: 0 });
    expect(result.rx).toBeGreaterThan(0);
    expect(result.rx + result.dropped).toBe(2000);
    const bad = await run(['--driver', fixture('throws-on-load'), '--count', '10']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/driver \S+throws-on-load\.ts failed to load: this driver cannot load/);
    // Without the driver, the device is unknown: a usage error.
    expect((await run(['--device', 'vendor-vf', '--count', '10'])).code).toBe(2);
  });
});
