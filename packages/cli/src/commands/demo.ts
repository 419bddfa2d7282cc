import { parseArgs } from 'node:util';
import { Bus, Class, Device, sysfs } from '@mdev/driver-core';
import {
  mdevProbe,
  mdevRegisterBus,
  mdevRegisterDevice,
  mdevRemove,
  mdevUnregisterBus,
  mdevUnregisterDevice,
} from '@mdev/mdev-core';
import type { CommandIo } from '../io';

export const summary = 'walk the kernel documentation flow on a sample parent through sysfs';

export const usage = `usage: mdev demo

Registers a sample parent and runs the kernel documentation's sysfs flow (list the types, read
their attributes, create an mdev, look at it, remove it), printing each command and its output.
`;

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

/**
 * `mdev demo`: registers a sample parent on a mediated bus, then runs the documented shell flow
 * (list types, read attributes, `echo $UUID > create`, look at the device, `echo 1 > remove`)
 * against the virtual sysfs, printing each command and its output.
 */
export async function run(args: string[], io: CommandIo): Promise<number> {
  // A misused command line throws out of parseArgs; `main` reports it with the usage (exit 2).
  const { values } = parseArgs({
    args,
    options: { help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(usage);
    return 0;
  }
  const out = (line: string) => io.stdout.write(`${line}\n`);
  const bus = new Bus({ name: 'mdev', probe: mdevProbe, remove: mdevRemove });
  mdevRegisterBus(bus);
  const cls = new Class('sample');
  cls.register();
  const parent = new Device({ name: 'sample', class: cls });
  parent.add();
  let instances = 4;
  mdevRegisterDevice(
    parent,
    {
      supportedTypeGroups: [
        {
          name: '1',
          attrs: [
            { name: 'name', mode: 0o444, show: () => 'Sample device' },
            { name: 'device_api', mode: 0o444, show: () => 'vfio-pci' },
            { name: 'available_instances', mode: 0o444, show: () => String(instances) },
          ],
        },
      ],
      create: () => {
        instances--;
      },
      remove: () => {
        instances++;
      },
    },
    bus,
  );
  try {
    const types = `${parent.path}/mdev_supported_types`;
    const sh = (cmd: string, fn: () => string | undefined) => {
      out(`# ${cmd}`);
      const text = fn();
      if (text) io.stdout.write(text);
    };
    sh(`ls ${types}`, () => `${sysfs.list(types).join('  ')}\n`);
    for (const attr of ['name', 'device_api', 'available_instances']) {
      sh(`cat ${types}/sample-1/${attr}`, () => sysfs.read(`${types}/sample-1/${attr}`));
    }
    sh(`echo "${UUID}" > ${types}/sample-1/create`, () => {
      sysfs.write(`${types}/sample-1/create`, `${UUID}\n`);
      return undefined;
    });
    sh('ls /sys/bus/mdev/devices', () => `${sysfs.list('/sys/bus/mdev/devices').join('  ')}\n`);
    sh(
      `readlink /sys/bus/mdev/devices/${UUID}/mdev_type`,
      () => `${sysfs.readlink(`/sys/bus/mdev/devices/${UUID}/mdev_type`)}\n`,
    );
    sh(`cat ${types}/sample-1/available_instances`, () =>
      sysfs.read(`${types}/sample-1/available_instances`),
    );
    sh(`echo 1 > /sys/bus/mdev/devices/${UUID}/remove`, () => {
      sysfs.write(`/sys/bus/mdev/devices/${UUID}/remove`, '1\n');
      return undefined;
    });
    sh('ls /sys/bus/mdev/devices', () => `${sysfs.list('/sys/bus/mdev/devices').join('  ')}\n`);
    return 0;
  } finally {
    mdevUnregisterDevice(parent);
    parent.unregister();
    cls.unregister();
    mdevUnregisterBus(bus);
  }
}
