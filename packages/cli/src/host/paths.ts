import { join } from 'node:path';

const uid = () => process.getuid?.() ?? -1;

/**
 * The default control socket: `$XDG_RUNTIME_DIR/mdev/control.sock`, `/run/mdev/control.sock` for
 * root (as system services keep theirs), else a folder of the user's own under the temp folder.
 */
export function defaultControlPath(env: NodeJS.ProcessEnv = process.env): string {
  if (uid() === 0) return '/run/mdev/control.sock';
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'mdev', 'control.sock');
  return join(env.TMPDIR || '/tmp', `mdev-${uid()}`, 'control.sock');
}

/**
 * The default definitions folder: `$XDG_CONFIG_HOME/mdev` (`~/.config/mdev`), `/etc/mdev` for
 * root.
 */
export function defaultConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  if (uid() === 0) return '/etc/mdev';
  if (env.XDG_CONFIG_HOME) return join(env.XDG_CONFIG_HOME, 'mdev');
  return join(env.HOME || '/', '.config', 'mdev');
}
