import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type HostConfig, HostConfigError, readHostConfig } from '../host/config';
import { parseHttpAddress, StatusServer } from '../host/http';
import { DeviceModel, errorText } from '../host/model';
import { defaultConfigDir, defaultControlPath } from '../host/paths';
import {
  ControlServer,
  HostStartError,
  loadPeerCredentials,
  prepareControlPath,
} from '../host/server';
import type { CommandIo } from '../io';
import { filePath, UsageError } from '../usage';

export const summary = 'hold the devices in a long-running process, managed over a control socket';

export const usage = `usage: mdev host [--control PATH] [--config DIR] [--driver MODULE]...
                 [--http 127.0.0.1:PORT] [--config-file FILE]

Runs in the foreground (a service manager runs it) and holds the device model: the virtio-mdev
transport, virtio-net, mvnet_loopback, the VFIO samples (mtty, mdpy, mbochs) and the parents
of every --driver. Devices defined with 'start: auto' are started; 'mdev list', 'define',
'start', ... talk to it. SIGTERM or Ctrl-C stops every device and exits 0.

  --control PATH   the control socket (default $XDG_RUNTIME_DIR/mdev/control.sock,
                   /run/mdev/control.sock for root); its folder is made mode 0700
  --config DIR     the device definitions, one file per device at DIR/<parent>/<uuid>
                   (default $XDG_CONFIG_HOME/mdev, /etc/mdev for root)
  --driver MODULE  load a vendor parent driver (repeatable): a module file or package name
                   whose default export, a function, registers the parent (its module init)
  --http ADDR:PORT serve a read-only status page (parents, types, devices, counters, a rate
                   plot, the displays) on a loopback address: 127.0.0.1:PORT or [::1]:PORT
                   (port 0: a free one, which the host logs)
  --config-file FILE
                   settings as JSON: {"drivers": [...], "control": PATH, "definitions": DIR,
                   "http": "127.0.0.1:PORT"}; the command line's options win over the file,
                   its --driver options load after the file's drivers. Relative paths are
                   taken from the file's folder.
`;

/**
 * Loads a vendor parent driver, as modprobe loads a module: imports it and runs its default
 * export when that is a function. A path is taken from `cwd`; anything else is a package name.
 */
export async function loadDriver(spec: string, cwd: string): Promise<void> {
  const isPath = spec.startsWith('.') || isAbsolute(spec) || existsSync(resolve(cwd, spec));
  const mod = (await import(isPath ? pathToFileURL(resolve(cwd, spec)).href : spec)) as {
    default?: unknown;
  };
  if (typeof mod.default === 'function') await (mod.default as () => unknown)();
}

/**
 * Loads the `--driver` modules of a single-shot command's `args` before its other options are
 * checked (the devices they register are what `--device` is checked against). Returns false,
 * after saying which one on stderr, when a module fails to load; UsageError for an empty one.
 */
export async function loadDriverOptions(
  command: string,
  args: string[],
  io: CommandIo,
): Promise<boolean> {
  const { values } = parseArgs({
    args,
    options: { driver: { type: 'string', multiple: true } },
    strict: false,
  });
  for (const d of (values.driver ?? []) as (string | boolean)[]) {
    if (typeof d !== 'string' || d === '') throw new UsageError('--driver needs a module');
    try {
      await loadDriver(d, io.cwd ?? process.cwd());
    } catch (err) {
      io.stderr.write(`mdev ${command}: driver ${d} failed to load: ${errorText(err)}\n`);
      return false;
    }
  }
  return true;
}

/** `mdev host`: runs until SIGTERM or Ctrl-C, then stops every device; 0 after a clean stop. */
export async function run(args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      control: { type: 'string' },
      config: { type: 'string' },
      driver: { type: 'string', multiple: true },
      http: { type: 'string' },
      'config-file': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(usage);
    return 0;
  }
  let settings: HostConfig = { drivers: [] };
  if (values['config-file'] !== undefined) {
    const file = filePath(io, '--config-file', values['config-file']);
    try {
      settings = readHostConfig(file);
    } catch (err) {
      if (!(err instanceof HostConfigError)) throw err;
      io.stderr.write(`mdev host: ${err.message}\n`);
      return 2;
    }
  }
  const control =
    values.control !== undefined
      ? filePath(io, '--control', values.control)
      : (settings.control ?? defaultControlPath());
  const config =
    values.config !== undefined
      ? filePath(io, '--config', values.config)
      : (settings.definitions ?? defaultConfigDir());
  const http =
    values.http !== undefined
      ? parseHttpAddress(values.http)
      : settings.http !== undefined
        ? parseHttpAddress(settings.http)
        : null;
  for (const d of values.driver ?? [])
    if (d === '') throw new UsageError('--driver needs a module');
  const drivers = [...settings.drivers, ...(values.driver ?? [])];
  const log = (line: string) => io.stderr.write(`mdev host: ${line}\n`);

  try {
    await loadPeerCredentials();
    await prepareControlPath(control);
  } catch (err) {
    if (!(err instanceof HostStartError)) throw err;
    io.stderr.write(`mdev host: ${err.message}\n`);
    return 2;
  }
  for (const d of drivers) {
    try {
      await loadDriver(d, io.cwd ?? process.cwd());
      log(`driver ${d} loaded`);
    } catch (err) {
      log(`driver ${d} failed to load: ${errorText(err)}`);
    }
  }
  // A device bound to vhost_mdev without a socket of its own is served next to the control
  // socket, in the directory only the host's user can reach.
  // vhost_mdev (`mdev bind`) needs the same addon the peer check just loaded; imported here
  // so that no other command needs it.
  const vhost = await import('@mdev/vhost-mdev');
  const model = new DeviceModel(config, log, vhost, dirname(control));
  const server = new ControlServer(control, model, log);
  const status = http ? new StatusServer(model, log) : null;
  try {
    model.load();
    model.loadDefinitions();
    model.autostart();
    await server.listen();
  } catch (err) {
    model.shutdown();
    throw err;
  }
  if (status && http) {
    try {
      const port = await status.listen(http);
      const where = http.host.includes(':') ? `[${http.host}]` : http.host;
      log(`status page on http://${where}:${port}/`);
    } catch (err) {
      log(`the status page cannot listen on ${http.host}:${http.port}: ${errorText(err)}`);
      await server.close();
      model.shutdown();
      return 1;
    }
  }
  log(`listening on ${control}`);

  let stop!: (why: string) => void;
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });
  const onTerm = () => stop('SIGTERM');
  const onAbort = () => stop('SIGINT');
  process.once('SIGTERM', onTerm);
  io.signal?.addEventListener('abort', onAbort, { once: true });
  const why = await stopped;
  process.off('SIGTERM', onTerm);
  io.signal?.removeEventListener('abort', onAbort);
  log(`${why}: stopping`);
  await status?.close();
  await server.close();
  model.shutdown();
  log('stopped');
  return 0;
}
