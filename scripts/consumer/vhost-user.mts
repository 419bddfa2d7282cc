/**
 * Consumer scenario "vhost-user": @mdev/vhost-user installed alone. Its addon ships in the
 * tarball and no install script runs, so this checks that the shipped addon loads: a memfd
 * passed over a socket pair, mapped on both sides, written on one and read on the other, and a
 * GET_FEATURES request framed, decoded and answered.
 * Compiled by the consumer test with module "nodenext", then run with node.
 */
import {
  createMemfd,
  encodeRequest,
  encodeU64Reply,
  mapShared,
  receiveFds,
  sendFds,
  socketPair,
  unmap,
  VHOST_USER_GET_FEATURES,
  VhostUserConnection,
} from '@mdev/vhost-user';

function check(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Error(`vhost-user: ${what}`);
}

const SIZE = 1 << 16;
const [front, back] = socketPair();
const mem = createMemfd('consumer', SIZE);
check(sendFds(front, new Uint8Array([1]), [mem]) === 1, 'sendmsg');
const got = receiveFds(back, new Uint8Array(1), 1);
check(got !== null && got.fds.length === 1, 'one fd received');
const theirs = new Int32Array(mapShared(got.fds[0]!, { length: SIZE }));
const mine = new Int32Array(mapShared(mem, { length: SIZE }));
Atomics.store(mine, 100, 0x5eed);
check(Atomics.load(theirs, 100) === 0x5eed, 'both mappings see the same page');
unmap(theirs.buffer as ArrayBuffer);
check(theirs.length === 0, 'unmap detaches');
unmap(mine.buffer as ArrayBuffer);
got.fds[0]!.close();
mem.close();

const frontend = new VhostUserConnection(front);
const backend = new VhostUserConnection(back);
frontend.send(encodeRequest({ type: 'GET_FEATURES' }));
const req = backend.receiveRequest();
check(req?.body.type === 'GET_FEATURES', 'request decoded');
backend.send(encodeU64Reply(req.request, 1n << 32n));
const reply = frontend.receiveReply(VHOST_USER_GET_FEATURES);
check(reply?.type === 'u64' && reply.value === 1n << 32n, 'reply decoded');
frontend.close();
backend.close();
console.log('vhost-user: fd passing, shared mapping and protocol round trip ok');
