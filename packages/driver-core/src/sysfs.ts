import { KernelError } from './errors';
import { uevents } from './uevent';

/**
 * The most a store receives from one write(2) (PAGE_SIZE). fs/kernfs/file.c kernfs_fop_write()
 * refuses a longer write with E2BIG only for files that set `atomic_write_len`; sysfs attribute
 * files (fs/sysfs/file.c sysfs_file_kfops_wo/rw) do not, so the write is cut to the first page:
 * the store sees at most PAGE_SIZE bytes and write(2) returns what the store accepted of them.
 */
export const SYSFS_PAGE_SIZE = 4096;

/**
 * An attribute file (the kernel's struct attribute with its show/store). `show` returns the text a
 * read gives (a trailing newline is added when missing); `store` receives the written text and
 * returns the number of bytes it accepted (the whole write when it returns nothing) or throws a
 * KernelError, whose errno the writer sees.
 */
export interface Attribute {
  name: string;
  /** Permission bits, e.g. 0o444 (read-only), 0o200 (write-only), 0o644. */
  mode: number;
  show?(): string;
  store?(text: string): number | undefined;
}

/** Mirrors struct attribute_group: attributes, in a subdirectory when the group has a name. */
export interface AttributeGroup {
  name?: string;
  attrs: Attribute[];
}

export type SysfsKind = 'dir' | 'file' | 'link';

type Node =
  | { kind: 'dir'; children: Map<string, Node> }
  | { kind: 'file'; attr: Attribute }
  | { kind: 'link'; target: string };

const MAX_LINK_DEPTH = 40;

function split(path: string): string[] {
  if (!path.startsWith('/')) throw new TypeError(`sysfs path must be absolute: ${path}`);
  return path.split('/').filter((p) => p !== '' && p !== '.');
}

/** Joins path pieces into an absolute sysfs path. */
export function sysfsJoin(...parts: string[]): string {
  return `/${parts
    .flatMap((p) => p.split('/'))
    .filter((p) => p !== '')
    .join('/')}`;
}

/**
 * The virtual sysfs: directories, attribute files and symlinks, with paths that mirror the
 * kernel's. User-side calls (`read`, `write`, `list`, `readlink`) behave like the files do;
 * kernel-side calls (`mkdir`, `createFile`, `symlink`, `remove`) are what drivers use.
 */
export class Sysfs {
  private readonly root: Node = { kind: 'dir', children: new Map() };

  private walk(path: string, followLast: boolean, depth = 0): Node | undefined {
    if (depth > MAX_LINK_DEPTH) throw new KernelError('ELOOP', `sysfs: too many links at ${path}`);
    const parts = split(path);
    let node: Node = this.root;
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i]!;
      if (node.kind !== 'dir') return undefined;
      if (name === '..') throw new TypeError(`sysfs path may not contain '..': ${path}`);
      const next = node.children.get(name);
      if (next === undefined) return undefined;
      const last = i === parts.length - 1;
      if (next.kind === 'link' && (!last || followLast)) {
        const rest = parts.slice(i + 1).join('/');
        return this.walk(`${next.target}/${rest}`, followLast, depth + 1);
      }
      node = next;
    }
    return node;
  }

  private need(path: string, followLast = true): Node {
    const node = this.walk(path, followLast);
    if (!node) throw new KernelError('ENOENT', `sysfs: no such file or directory: ${path}`);
    return node;
  }

  private parentDir(path: string): { dir: Map<string, Node>; name: string } {
    const parts = split(path);
    const name = parts.pop();
    if (name === undefined) throw new KernelError('EEXIST', 'sysfs: the root exists');
    const parent = this.need(`/${parts.join('/')}`);
    if (parent.kind !== 'dir') throw new KernelError('ENOTDIR', `sysfs: not a directory: ${path}`);
    return { dir: parent.children, name };
  }

  // ---- user side -------------------------------------------------------------------------

  /** Reads an attribute file, like `cat`. EACCES for a write-only file, EIO without a show. */
  read(path: string): string {
    const node = this.need(path);
    if (node.kind === 'dir') throw new KernelError('EISDIR', `sysfs: is a directory: ${path}`);
    if (node.kind !== 'file') throw new KernelError('ENOENT', `sysfs: dangling link: ${path}`);
    if ((node.attr.mode & 0o444) === 0) {
      throw new KernelError('EACCES', `sysfs: ${path} is not readable`);
    }
    if (!node.attr.show) throw new KernelError('EIO', `sysfs: ${path} has no show`);
    const text = node.attr.show();
    return text.endsWith('\n') ? text : `${text}\n`;
  }

  /**
   * Writes an attribute file, like one write(2) of `echo text > path` (the caller includes the
   * newline `echo` would add). Returns the bytes the store accepted or throws the store's
   * KernelError. As kernfs does, the store gets at most the first SYSFS_PAGE_SIZE bytes (so a
   * write of more is short, or refused by the store), and an empty write does not reach it.
   * Uevents the store raises are delivered when the write returns.
   */
  write(path: string, text: string): number {
    const node = this.need(path);
    if (node.kind === 'dir') throw new KernelError('EISDIR', `sysfs: is a directory: ${path}`);
    if (node.kind !== 'file') throw new KernelError('ENOENT', `sysfs: dangling link: ${path}`);
    if ((node.attr.mode & 0o222) === 0) {
      throw new KernelError('EACCES', `sysfs: ${path} is not writable`);
    }
    const store = node.attr.store;
    if (!store) throw new KernelError('EIO', `sysfs: ${path} has no store`);
    let count = Buffer.byteLength(text);
    if (count === 0) return 0;
    if (count > SYSFS_PAGE_SIZE) {
      // A character cut in two by the page boundary arrives as U+FFFD, as its bytes would.
      text = Buffer.from(text).subarray(0, SYSFS_PAGE_SIZE).toString();
      count = SYSFS_PAGE_SIZE;
    }
    const accepted = uevents.hold(() => store(text));
    return accepted === undefined ? count : Math.min(accepted, count);
  }

  /** Lists a directory's entries, sorted like `ls`. */
  list(path: string): string[] {
    const node = this.need(path);
    if (node.kind !== 'dir') throw new KernelError('ENOTDIR', `sysfs: not a directory: ${path}`);
    return [...node.children.keys()].sort();
  }

  /** The absolute target of a symlink. EINVAL when the path is not a link. */
  readlink(path: string): string {
    const node = this.need(path, false);
    if (node.kind !== 'link') throw new KernelError('EINVAL', `sysfs: not a link: ${path}`);
    return node.target;
  }

  /** Whether the path exists (following links). */
  exists(path: string): boolean {
    return this.walk(path, true) !== undefined;
  }

  /** The kind of a node (links not followed) and, for files, its mode. */
  stat(path: string): { kind: SysfsKind; mode: number } {
    const node = this.need(path, false);
    if (node.kind === 'file') return { kind: 'file', mode: node.attr.mode };
    return { kind: node.kind, mode: node.kind === 'dir' ? 0o755 : 0o777 };
  }

  /** Every path under `path` (not following links), depth first; for tests and `mdev sysfs`. */
  tree(path = '/sys'): string[] {
    const out: string[] = [];
    const visit = (p: string, node: Node) => {
      out.push(p);
      if (node.kind === 'dir') {
        for (const name of [...node.children.keys()].sort()) {
          visit(p === '/' ? `/${name}` : `${p}/${name}`, node.children.get(name)!);
        }
      }
    };
    const start = this.walk(path, false);
    if (start) visit(path, start);
    return out;
  }

  // ---- kernel side -----------------------------------------------------------------------

  /** Creates a directory and its missing parents; an existing directory is fine. */
  mkdir(path: string): void {
    let node = this.root;
    for (const name of split(path)) {
      if (node.kind !== 'dir') throw new KernelError('ENOTDIR', `sysfs: not a directory: ${path}`);
      let next = node.children.get(name);
      if (!next) {
        next = { kind: 'dir', children: new Map() };
        node.children.set(name, next);
      } else if (next.kind !== 'dir') {
        throw new KernelError('EEXIST', `sysfs: ${path} exists and is not a directory`);
      }
      node = next;
    }
  }

  /** Creates an attribute file in an existing directory (sysfs_create_file). EEXIST on a clash. */
  createFile(dirPath: string, attr: Attribute): void {
    const dir = this.need(dirPath);
    if (dir.kind !== 'dir') throw new KernelError('ENOTDIR', `sysfs: not a directory: ${dirPath}`);
    if (dir.children.has(attr.name)) {
      throw new KernelError('EEXIST', `sysfs: ${dirPath}/${attr.name} exists`);
    }
    dir.children.set(attr.name, { kind: 'file', attr });
  }

  /** Creates the files of a group, in its subdirectory when named (sysfs_create_group). */
  createGroup(dirPath: string, group: AttributeGroup): void {
    const target = group.name ? sysfsJoin(dirPath, group.name) : dirPath;
    if (group.name) this.mkdir(target);
    const made: string[] = [];
    try {
      for (const attr of group.attrs) {
        this.createFile(target, attr);
        made.push(attr.name);
      }
    } catch (err) {
      for (const name of made) this.remove(sysfsJoin(target, name));
      if (group.name) this.remove(target);
      throw err;
    }
  }

  /** Removes a group's files (and its subdirectory when named). */
  removeGroup(dirPath: string, group: AttributeGroup): void {
    if (group.name) {
      this.remove(sysfsJoin(dirPath, group.name));
      return;
    }
    for (const attr of group.attrs) this.remove(sysfsJoin(dirPath, attr.name));
  }

  /** Removes an attribute file. */
  removeFile(dirPath: string, name: string): void {
    this.remove(sysfsJoin(dirPath, name));
  }

  /** Creates a symlink at `path` pointing to the absolute `target`. EEXIST on a clash. */
  symlink(path: string, target: string): void {
    const { dir, name } = this.parentDir(path);
    if (dir.has(name)) throw new KernelError('EEXIST', `sysfs: ${path} exists`);
    dir.set(name, { kind: 'link', target });
  }

  /** Removes a node and everything under it; a missing node is ignored. */
  remove(path: string): void {
    const parts = split(path);
    const name = parts.pop();
    if (name === undefined) return;
    const parent = this.walk(`/${parts.join('/')}`, true);
    if (parent?.kind === 'dir') parent.children.delete(name);
  }
}

/** The sysfs tree of this process, mounted at /sys. */
export const sysfs = new Sysfs();
for (const dir of ['/sys/devices/virtual', '/sys/bus', '/sys/class']) sysfs.mkdir(dir);
