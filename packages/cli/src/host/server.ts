import { lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { KernelError } from '@mdev/driver-core';
import type { PeerCredentials } from '@mdev/vhost-user';
import { type DeviceModel, errorText } from './model';
import {
  LineSplitter,
  MAX_LINE,
  PROTOCOL_VERSION,
  ProtocolError,
  parseRequest,
  type Reply,
  replyLine,
} from './protocol';

/** How many clients may be connected at once; more are answered EBUSY and closed. */
export const MAX_CLIENTS = 64;

/** The host cannot start: another host listens, or the socket's folder is not private. */
export class HostStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostStartError';
  }
}

const uid = () => process.getuid?.() ?? -1;

/** Resolves to whether something accepts connections on the socket at `path`. */
export function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Makes the socket's folder (mode 0700) if it is missing, checks that it is the user's own and
 * closed to others, and clears a stale socket left by a host that died. HostStartError when a
 * host listens there, when the path is not a socket, or when the folder is not private.
 */
export async function prepareControlPath(path: string): Promise<void> {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (st.uid !== uid() || (st.mode & 0o077) !== 0) {
    throw new HostStartError(
      `the control socket's folder ${dir} must be yours and closed to others (mode 0700)`,
    );
  }
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(path);
  } catch {
    return;
  }
  if (!existing.isSocket()) throw new HostStartError(`${path} exists and is not a socket`);
  if (await socketIsLive(path)) throw new HostStartError(`a host is listening on ${path}`);
  // Nobody listens: the socket of a host that was killed. Take its place.
  unlinkSync(path);
}

/** The outcome of the peer check: allowed, or refused with the reason. */
export type PeerCheck = { allowed: true } | { allowed: false; reason: string };

/** Who is on the other end of a connected Unix socket (SO_PEERCRED). */
export type PeerCredentialsOf = (socket: Socket) => PeerCredentials;

/**
 * The fd of an accepted connection. Node keeps it on the socket's libuv handle (a Pipe on
 * Unix); an fd that is not there (a socket already closed) is EBADF.
 */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0)
    throw Object.assign(new Error('EBADF: the connection has no fd'), { code: 'EBADF' });
  return fd;
}

/** The addon's SO_PEERCRED, once `loadPeerCredentials` has loaded it. */
let peerCredentials: ((fd: number) => PeerCredentials) | null = null;

/**
 * Loads `@mdev/vhost-user`'s addon, which reads SO_PEERCRED. Only the host needs it: the other
 * commands work where the addon was not built. HostStartError when it does not load.
 */
export async function loadPeerCredentials(): Promise<void> {
  if (peerCredentials) return;
  try {
    peerCredentials = (await import('@mdev/vhost-user')).peerCredentials;
  } catch (err) {
    throw new HostStartError(`cannot check the uid of clients: ${errorText(err)}`);
  }
}

/** SO_PEERCRED of the connection's fd, read when the client connected (unix(7)). */
export const socketPeerCredentials: PeerCredentialsOf = (socket) => {
  if (!peerCredentials) throw new Error('the SO_PEERCRED reader is not loaded');
  return peerCredentials(socketFd(socket));
};

/**
 * Whether the client on `socket` may use the host: only the host's own user may.
 *
 * The peer's uid comes from SO_PEERCRED (unix(7)): the credentials the kernel recorded when the
 * client called connect(2), which the client cannot choose. Any other uid is refused, root's
 * too when the host is not root's. Beyond that, the kernel already keeps others out (connect(2)
 * on a Unix socket needs write permission on the socket file, mode 0600 in a folder of mode
 * 0700, both the host's user's); that this still holds when the client arrives (nobody loosened
 * the modes or swapped the file) is checked too.
 */
export function checkPeer(
  socket: Socket,
  path: string,
  credentialsOf: PeerCredentialsOf = socketPeerCredentials,
): PeerCheck {
  let peer: PeerCredentials;
  try {
    peer = credentialsOf(socket);
  } catch (err) {
    return { allowed: false, reason: `cannot read the client's credentials: ${errorText(err)}` };
  }
  if (peer.uid !== uid()) {
    return {
      allowed: false,
      reason: `uid ${peer.uid} (pid ${peer.pid}) is not the host's user (uid ${uid()})`,
    };
  }
  try {
    const sock = lstatSync(path);
    const dir = statSync(dirname(path));
    if (!sock.isSocket()) return { allowed: false, reason: `${path} is no longer a socket` };
    if (sock.uid !== uid() || (sock.mode & 0o077) !== 0)
      return { allowed: false, reason: `${path} is no longer private to uid ${uid()}` };
    if (dir.uid !== uid() || (dir.mode & 0o077) !== 0)
      return { allowed: false, reason: `${dirname(path)} is no longer private to uid ${uid()}` };
    return { allowed: true };
  } catch (err) {
    return { allowed: false, reason: `cannot check ${path}: ${errorText(err)}` };
  }
}

/**
 * The control socket of `mdev host`: requests in, replies out; nothing a client sends stops
 * it.
 */
export class ControlServer {
  private readonly server: Server;
  /** Each connected client, with what stops its work and the end of its last request. */
  private readonly clients = new Map<
    Socket,
    { gone: AbortController; idle: () => Promise<void> }
  >();

  constructor(
    readonly path: string,
    private readonly model: DeviceModel,
    private readonly log: (line: string) => void,
  ) {
    // Half-open: a client that ends its side (Ctrl-C of a pktgen run) still gets its reply.
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  /** Listens on `path` (prepared by `prepareControlPath`); the socket file is made mode 0600. */
  async listen(): Promise<void> {
    await loadPeerCredentials();
    // The socket file is created by bind(2) with the mode 0777 & ~umask: mask everything but the
    // owner's bits so that it is never open to others, not even between bind and chmod.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen({ path: this.path }, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(umask);
    }
  }

  /**
   * Stops listening, stops the work of every client (a pktgen run replies with what it did),
   * drops them and removes the socket file.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.all(
      [...this.clients].map(async ([socket, { gone, idle }]) => {
        gone.abort();
        await idle();
        socket.destroy();
      }),
    );
    await closed;
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone (server.close unlinks it on some platforms).
    }
  }

  private accept(socket: Socket): void {
    const send = (reply: Reply) => {
      if (!socket.destroyed && !socket.write(replyLine(reply))) socket.pause();
    };
    const fail = (id: Reply['id'], code: string, message: string) =>
      send({ version: PROTOCOL_VERSION, id, ok: false, error: { code, message } });
    socket.on('error', () => {
      // A client that went away mid-reply: nothing to tell it.
    });
    const peer = checkPeer(socket, this.path);
    if (!peer.allowed) {
      this.log(`client refused: ${peer.reason}`);
      fail(null, 'EACCES', `refused: ${peer.reason}`);
      socket.end();
      socket.resume();
      return;
    }
    if (this.clients.size >= MAX_CLIENTS) {
      fail(null, 'EBUSY', `${MAX_CLIENTS} clients are connected already`);
      socket.end();
      socket.resume();
      return;
    }
    // Aborted when the client ends its side or goes away, or the host stops: work it asked for
    // (a pktgen run) winds down and replies with what it did.
    const gone = new AbortController();
    // Requests run one after the other, so replies leave in the order the requests came even
    // when one of them takes a while (pktgen, tty).
    let queue: Promise<void> = Promise.resolve();
    this.clients.set(socket, { gone, idle: () => queue });
    socket.on('close', () => {
      this.clients.delete(socket);
      gone.abort();
    });
    // A client that does not read its replies stops being read from, so it cannot make the host
    // hold an unbounded backlog of them.
    socket.on('drain', () => socket.resume());
    const run = async (line: string) => {
      let id: Reply['id'] = null;
      try {
        const req = parseRequest(line);
        id = req.id;
        const result = await this.model.handle(req.verb, req.args, gone.signal);
        send({ version: PROTOCOL_VERSION, id, ok: true, result: result ?? null });
      } catch (err) {
        if (err instanceof ProtocolError) fail(err.id, err.code, err.message);
        else if (KernelError.is(err)) fail(id, err.code, err.message);
        else {
          const code = (err as { code?: unknown })?.code;
          fail(id, typeof code === 'string' ? code : 'EIO', errorText(err));
        }
      }
    };
    const lines = new LineSplitter(
      MAX_LINE,
      (line) => {
        if (line.trim() === '') return;
        queue = queue.then(() => run(line));
      },
      () => {
        queue = queue.then(() => {
          fail(null, 'EMSGSIZE', `a request line is at most ${MAX_LINE} bytes`);
          socket.end();
        });
      },
    );
    socket.on('end', () => {
      gone.abort();
      queue = queue.then(() => {
        socket.end();
      });
    });
    socket.on('data', (chunk: Buffer) => lines.push(chunk));
  }
}
