/**
 * The settings file of `mdev host` (`--config-file FILE`), JSON, every field optional:
 *
 *   {
 *     "drivers": ["./vendor/driver.js", "@vendor/mdev-driver"],
 *     "control": "/run/mdev/control.sock",
 *     "definitions": "/etc/mdev",
 *     "http": "127.0.0.1:8080"
 *   }
 *
 * `drivers` are loaded as `--driver` loads them (before those of the command line),
 * `definitions` is the folder `--config` names, `control` and `http` are as their options. The
 * command line's options win over the file. Relative paths are taken from the file's folder.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { UsageError } from '../usage';
import { parseHttpAddress } from './http';

/** What the settings file gives (paths absolute already). */
export interface HostConfig {
  drivers: string[];
  control?: string;
  definitions?: string;
  http?: string;
}

/** A settings file that cannot be used: its message names the file and the field. */
export class HostConfigError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'HostConfigError';
  }
}

const FIELDS = ['drivers', 'control', 'definitions', 'http'];

/**
 * Reads the settings file at `file` (an absolute path). HostConfigError when it cannot be read,
 * is not JSON, is not an object, has a field this host does not know, or a field of the wrong
 * kind.
 */
export function readHostConfig(file: string): HostConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new HostConfigError(file, `cannot read it (${(err as NodeJS.ErrnoException).code})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new HostConfigError(file, `not JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new HostConfigError(file, 'not a JSON object');
  const obj = json as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!FIELDS.includes(key))
      throw new HostConfigError(file, `unknown field "${key}" (known: ${FIELDS.join(', ')})`);
  }
  const base = dirname(file);
  // Module names stay names: only what looks like a path is taken from the file's folder.
  const modulePath = (m: string) => (m.startsWith('.') ? resolve(base, m) : m);
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const out: HostConfig = { drivers: [] };
  if (obj.drivers !== undefined) {
    if (!Array.isArray(obj.drivers))
      throw new HostConfigError(file, 'field "drivers" must be a list of module names or paths');
    obj.drivers.forEach((d, i) => {
      if (typeof d !== 'string' || d === '')
        throw new HostConfigError(file, `field "drivers"[${i}] must be a module name or path`);
      out.drivers.push(modulePath(d));
    });
  }
  for (const key of ['control', 'definitions', 'http'] as const) {
    const v = obj[key];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v === '')
      throw new HostConfigError(file, `field "${key}" must be a non-empty string`);
    if (key === 'http') {
      try {
        parseHttpAddress(v, 'field "http"');
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        throw new HostConfigError(file, err.message);
      }
    }
    out[key] = key === 'http' ? v : path(v);
  }
  return out;
}
