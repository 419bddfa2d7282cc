// `mdev vhost-user` in a process of its own, for the tests whose peer talks to it, and what a
// session leaves open in that process.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PeerProcess } from '@mdev/test-peers';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

export interface Served {
  proc: PeerProcess;
  socket: string;
  /** The JSON events printed so far. */
  events(): Record<string, unknown>[];
  /** SIGTERM, then the final counters it printed. */
  stop(): Promise<{ counters: Record<string, number>; code: number | null }>;
}

/** `mdev vhost-user --json` in a process of its own, on the first CPU (the peer gets the other). */
export async function serveIn(dir: string, name: string, extra: string[] = []): Promise<Served> {
  const socket = join(dir, `${name}.sock`);
  const proc = new PeerProcess(
    'taskset',
    [
      '-c',
      '0',
      process.execPath,
      '--conditions=source',
      '--import',
      'tsx',
      MAIN,
      'vhost-user',
      '--socket',
      socket,
      '--json',
      ...extra,
    ],
    { timeoutMs: 120_000, stopSignal: 'SIGTERM' },
  );
  await proc.waitFor(/"event":"listening"/, 30_000);
  const events = () =>
    proc.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    proc,
    socket,
    events,
    async stop() {
      const exit = await proc.stop();
      const stopped = events().find((e) => e.event === 'stopped');
      return { counters: (stopped?.counters ?? {}) as Record<string, number>, code: exit.code };
    },
  };
}

/**
 * What a frontend's session leaves in the backend process if it leaks: sockets, eventfds and
 * memory files among its open fds, and mappings of another process's memory.
 */
export function resources(pid: number) {
  const fds = new Set<string>();
  for (const n of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${n}`);
      if (/^socket:|eventfd|memfd:|\/dev\/hugepages|rte/.test(target)) fds.add(`${n} -> ${target}`);
    } catch {
      // closed meanwhile
    }
  }
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => /memfd:|\/dev\/hugepages|rte/.test(l)).length;
  return { fds: [...fds].sort(), maps };
}

/** What is open now that was not before (a transient fd of the baseline may since be gone). */
export function leaked(before: ReturnType<typeof resources>, now: ReturnType<typeof resources>) {
  return {
    fds: now.fds.filter((fd) => !before.fds.includes(fd)),
    maps: Math.max(0, now.maps - before.maps),
  };
}

export async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}
