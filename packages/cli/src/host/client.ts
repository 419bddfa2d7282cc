import { connect } from 'node:net';
import {
  type Args,
  LineSplitter,
  MAX_LINE,
  PROTOCOL_VERSION,
  type Reply,
  type ReplyError,
  type Verb,
} from './protocol';

/** No host listens on the control socket (no socket file, or nobody accepting on it). */
export class HostUnavailableError extends Error {
  constructor(readonly path: string) {
    super(`no host is listening on ${path} (start one with 'mdev host')`);
    this.name = 'HostUnavailableError';
  }
}

/** The host refused a request: its errno-like code and its reason. */
export class HostRequestError extends Error {
  readonly code: string;
  constructor(error: ReplyError) {
    super(error.message);
    this.name = 'HostRequestError';
    this.code = error.code;
  }
}

/**
 * Sends one request to the host on `path` and resolves to its result. HostUnavailableError when
 * no host listens there, HostRequestError when the host refuses the request. When `signal` is
 * aborted the client ends its side of the connection: the host stops the work (a pktgen run)
 * and still replies.
 */
export function hostRequest<V extends Verb>(
  path: string,
  verb: V,
  args: Args<V>,
  signal?: AbortSignal,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    let reply: Reply | null = null;
    const lines = new LineSplitter(
      // Replies (a long list, say) may be longer than requests are allowed to be.
      MAX_LINE * 1024,
      (line) => {
        if (reply) return;
        try {
          reply = JSON.parse(line) as Reply;
        } catch {
          reject(new Error(`the host sent a malformed reply: ${line.slice(0, 200)}`));
        }
        socket.end();
      },
      () => {
        reject(new Error('the host sent an oversized reply'));
        socket.destroy();
      },
    );
    const onAbort = () => socket.end();
    socket.on('connect', () => {
      socket.write(`${JSON.stringify({ version: PROTOCOL_VERSION, id: 1, verb, args })}\n`);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
    socket.on('data', (chunk: Buffer) => lines.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!reply && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED'))
        reject(new HostUnavailableError(path));
      else if (!reply) reject(err);
    });
    socket.on('close', () => {
      signal?.removeEventListener('abort', onAbort);
      const r = reply as Reply | null;
      if (!r) reject(new Error('the host closed the connection without a reply'));
      else if (r.ok) resolve(r.result);
      else reject(new HostRequestError(r.error));
    });
  });
}
