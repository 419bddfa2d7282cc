import { startTestpmd, vhostBackend } from '@mdev/test-peers';
import { registerVirtioNetDriver } from '@mdev/virtio-net';
import { virtioUserAdd, virtioUserRemove } from '@mdev/virtio-user';
import { exchange, netdevOf } from './helpers';

const sock = '/tmp/vut/dpdk.sock';
registerVirtioNetDriver();
const t = await startTestpmd({ vdevs: [vhostBackend(sock)], args: ['--forward-mode=io'] });
const vdev = await virtioUserAdd({ path: sock, ring: 'packed' });
const nd = netdevOf(vdev);
nd.open();
const got = await exchange(nd, Number(process.env.N ?? 300), {
  ms: 1000,
  window: Number(process.env.WIN ?? 192),
});
console.log(
  'got',
  got.length,
  nd.stats.rxPackets,
  nd.stats.txPackets,
  'features',
  vdev.features.toString(16),
);
for (const r of vdev.rings)
  console.log(
    'ring',
    r!.vq.index,
    'free',
    r!.vq.numFree,
    'moreUsed',
    r!.vq.moreUsed(),
    'broken',
    r!.vq.isBroken,
    r!.vq.brokenBecause,
  );
virtioUserRemove(vdev);
const r = await t.stop();
console.log(
  r.ports,
  r.log
    .split('\n')
    .filter((l) => /error|invalid|fail|packed|wrap/i.test(l))
    .slice(-20)
    .join('\n'),
);
