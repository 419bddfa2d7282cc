/**
 * A vhost-user backend that lies, in a worker thread, for the hostile tests: it answers the
 * protocol as a net backend would until its `lie` (workerData) says otherwise. It serves one
 * frontend on `workerData.path`, then posts `{ done }` with what it saw.
 */
import { parentPort, workerData } from 'node:worker_threads';
import {
  acceptUnix,
  type DecodedRequest,
  encodeReplyAck,
  encodeU64Reply,
  encodeVringBaseReply,
  type Fd,
  listenUnix,
  mapShared,
  POLLIN,
  pollFds,
  signalEventFd,
  VhostUserConnection,
} from '@mdev/vhost-user';

export type Lie =
  | 'no-version-1'
  | 'silent'
  | 'hang-up'
  | 'status-never-resets'
  | 'used-idx-too-far'
  | 'used-id-not-in-flight'
  | 'unsolicited';

const { path, lie } = workerData as { path: string; lie: Lie };
const VERSION_1 = 1n << 32n;
const PROTOCOL_FEATURES = 1n << 30n;
const NET_MAC = 1n << 5n;
const PROTOCOL = (1n << 3n) | (1n << 16n); // REPLY_ACK, STATUS

const listener = listenUnix(path);
parentPort!.postMessage({ ready: true });
pollFds([{ fd: listener, events: POLLIN }], 10_000);
const sock = acceptUnix(listener)!;
listener.close();
const conn = new VhostUserConnection(sock);
const seen: string[] = [];
let status = 0;
let memory: { base: number; u8: Uint8Array } | null = null;
const rings: { used: number; call: Fd | null; kick: Fd | null; num: number }[] = [];

function ring(i: number) {
  rings[i] ??= { used: 0, call: null, kick: null, num: 0 };
  return rings[i]!;
}

/**
 * On the first TX kick (the driver's receive buffers are posted by then), the lie: on the RX
 * ring (0), a used index or a used id no driver can accept; on the socket, a message nobody
 * asked for.
 */
function lieOnTheRing(): void {
  if (lie === 'unsolicited') conn.send(encodeU64Reply(1, 0));
  if (lie !== 'used-idx-too-far' && lie !== 'used-id-not-in-flight') return;
  const rx = ring(0);
  if (!memory || !rx.call) return;
  const view = new DataView(memory.u8.buffer, memory.u8.byteOffset + (rx.used - memory.base));
  if (lie === 'used-idx-too-far') {
    view.setUint16(2, rx.num + 5, true);
  } else {
    view.setUint32(4, 0xffff, true); // an id past the ring: never made available
    view.setUint32(8, 64, true);
    view.setUint16(2, 1, true);
  }
  signalEventFd(rx.call);
}

function answer(req: DecodedRequest): void {
  const { body } = req;
  seen.push(body.type);
  const ack = () => {
    if (req.needReply) conn.send(encodeReplyAck(req.request, 0));
  };
  switch (body.type) {
    case 'GET_FEATURES': {
      const base = PROTOCOL_FEATURES | NET_MAC;
      conn.send(encodeU64Reply(req.request, lie === 'no-version-1' ? base : base | VERSION_1));
      return;
    }
    case 'GET_PROTOCOL_FEATURES':
      conn.send(encodeU64Reply(req.request, PROTOCOL));
      return;
    case 'GET_STATUS':
      conn.send(encodeU64Reply(req.request, lie === 'status-never-resets' ? status | 1 : status));
      return;
    case 'SET_STATUS':
      status = body.status;
      ack();
      return;
    case 'GET_VRING_BASE':
      conn.send(encodeVringBaseReply(body.index, 0));
      return;
    case 'SET_MEM_TABLE': {
      const r = body.regions[0]!;
      const buffer = mapShared(r.fd, { offset: r.mmapOffset, length: r.size });
      for (const x of body.regions) x.fd.close();
      memory = { base: r.guestAddr, u8: new Uint8Array(buffer) };
      ack();
      return;
    }
    case 'SET_VRING_NUM':
      ring(body.index).num = body.num;
      ack();
      return;
    case 'SET_VRING_ADDR':
      ring(body.index).used = body.used;
      ack();
      return;
    case 'SET_VRING_CALL':
      ring(body.index).call?.close();
      ring(body.index).call = body.fd;
      ack();
      return;
    case 'SET_VRING_KICK':
      ring(body.index).kick?.close();
      ring(body.index).kick = body.fd;
      ack();
      return;
    case 'SET_VRING_ERR':
      body.fd?.close();
      ack();
      return;
    default:
      ack();
  }
}

serve: for (;;) {
  const tx = rings[1]?.kick ?? null;
  const fds = tx ? [sock, tx] : [sock];
  const ready = pollFds(
    fds.map((fd) => ({ fd, events: POLLIN })),
    10_000,
  );
  if (ready.every((r) => r === 0)) break;
  if (tx && ready[1]) {
    rings[1]!.kick = null;
    tx.close();
    lieOnTheRing();
  }
  for (;;) {
    const req = conn.receiveRequest();
    if (req === null) {
      if (conn.ended) break serve;
      break;
    }
    if (lie === 'silent') {
      seen.push(req.body.type);
      continue;
    }
    if (lie === 'hang-up' && req.body.type === 'SET_OWNER') break serve;
    answer(req);
  }
}
for (const r of rings) {
  r?.call?.close();
  r?.kick?.close();
}
conn.close();
parentPort!.postMessage({ done: true, seen });
