import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Attr } from './protocol';

/** A UUID as mdevctl names its definition files. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * A persistent device definition, as mdevctl keeps it in `<config>/<parent>/<uuid>`:
 * `{"mdev_type": TYPE, "start": "auto"|"manual", "attrs": [{NAME: VALUE}, ...]}`.
 */
export interface Definition {
  uuid: string;
  parent: string;
  type: string;
  auto: boolean;
  attrs: Attr[];
}

/** A definition file that could not be read, and why. */
export interface LoadProblem {
  path: string;
  reason: string;
}

/** A definition's file content, as mdevctl writes it (two-space indented JSON). */
export function definitionJson(def: Omit<Definition, 'uuid' | 'parent'>): {
  mdev_type: string;
  start: 'auto' | 'manual';
  attrs: Record<string, string>[];
} {
  return {
    mdev_type: def.type,
    start: def.auto ? 'auto' : 'manual',
    attrs: def.attrs.map(([k, v]) => ({ [k]: v })),
  };
}

/**
 * Reads the fields of mdevctl's JSON form: `mdev_type` a string, `start` "auto" or "manual",
 * `attrs` absent, null or a list of one-key objects with string values. Error naming the first
 * field that is wrong.
 */
export function parseDefinitionJson(json: unknown): Omit<Definition, 'uuid' | 'parent'> {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new Error('not a JSON object');
  const o = json as Record<string, unknown>;
  if (typeof o.mdev_type !== 'string' || o.mdev_type === '')
    throw new Error('"mdev_type" must be a non-empty string');
  if (o.start !== 'auto' && o.start !== 'manual')
    throw new Error('"start" must be "auto" or "manual"');
  const attrs: Attr[] = [];
  if (o.attrs !== undefined && o.attrs !== null) {
    if (!Array.isArray(o.attrs)) throw new Error('"attrs" must be a list');
    for (const a of o.attrs) {
      const entries = typeof a === 'object' && a !== null ? Object.entries(a) : [];
      if (Array.isArray(a) || entries.length !== 1 || typeof entries[0]![1] !== 'string')
        throw new Error('every entry of "attrs" must be an object of one string value');
      attrs.push([entries[0]![0], entries[0]![1] as string]);
    }
  }
  return { type: o.mdev_type, auto: o.start === 'auto', attrs };
}

/** A parent name usable as a directory name: no separator, not `.` or `..`, not empty. */
export function isParentName(name: string): boolean {
  return (
    name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0')
  );
}

/**
 * The definitions under one config directory. Every write is atomic: the new content goes to a
 * temporary file in the same directory, is flushed to disk, renamed over the definition and the
 * directory is flushed too, so a process killed at any moment leaves the old file or the new
 * one, never a torn one (rename(2) replaces the name atomically).
 */
export class DefinitionStore {
  constructor(readonly dir: string) {}

  pathOf(parent: string, uuid: string): string {
    return join(this.dir, parent, uuid);
  }

  /**
   * Every definition that reads well, and the files that do not (by path, with the reason).
   * Names that are not UUIDs (our temporary files among them) are not definitions.
   */
  load(): { definitions: Definition[]; problems: LoadProblem[] } {
    const definitions: Definition[] = [];
    const problems: LoadProblem[] = [];
    let parents: string[];
    try {
      parents = readdirSync(this.dir).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { definitions, problems };
      throw err;
    }
    for (const parent of parents) {
      const pdir = join(this.dir, parent);
      let names: string[];
      try {
        if (!statSync(pdir).isDirectory()) continue;
        names = readdirSync(pdir).sort();
      } catch (err) {
        problems.push({ path: pdir, reason: (err as Error).message });
        continue;
      }
      for (const uuid of names) {
        if (!UUID_RE.test(uuid)) continue;
        const path = join(pdir, uuid);
        try {
          const def = parseDefinitionJson(JSON.parse(readFileSync(path, 'utf8')));
          definitions.push({ uuid, parent, ...def });
        } catch (err) {
          problems.push({ path, reason: (err as Error).message });
        }
      }
    }
    return { definitions, problems };
  }

  /** Writes `def` to `<dir>/<parent>/<uuid>` atomically (the directories are made 0755). */
  write(def: Definition): void {
    const pdir = join(this.dir, def.parent);
    mkdirSync(pdir, { recursive: true, mode: 0o755 });
    const text = `${JSON.stringify(definitionJson(def), null, 2)}\n`;
    const tmp = join(pdir, `.${def.uuid}.${process.pid}.tmp`);
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      unlinkSync(tmp);
      throw err;
    }
    closeSync(fd);
    renameSync(tmp, this.pathOf(def.parent, def.uuid));
    syncDir(pdir);
  }

  /** Removes a definition (the parent's directory too once it is empty); ENOENT if absent. */
  remove(parent: string, uuid: string): void {
    const pdir = join(this.dir, parent);
    unlinkSync(this.pathOf(parent, uuid));
    syncDir(pdir);
    try {
      rmdirSync(pdir);
    } catch {
      // Other definitions (or foreign files) are still there.
    }
  }
}

/** fsync on a directory: the rename or unlink in it is on disk once this returns. */
function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
