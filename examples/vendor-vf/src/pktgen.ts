import { type PktgenParent, registerPktgenDevice } from '@mdev/cli';
import { hostRam } from '@mdev/virtio';
import {
  VENDOR_VF_TYPE_PATH,
  type VendorVfCard,
  type VendorVfProvision,
  vendorVfInit,
} from './driver';

/** The name pktgen knows the card by: `mdev pktgen --device vendor-vf`. */
export const VENDOR_VF_PKTGEN_DEVICE = 'vendor-vf';

/** The card as pktgen holds it (tests reach the VF through `card`). */
export interface VendorVfPktgenParent extends PktgenParent {
  card: VendorVfCard;
  /** The MAC and MTU of the next mdev of `uuid` (`mdev dev add ... mac M mtu N` on a host). */
  provision(uuid: string, attrs: VendorVfProvision): void;
}

let registered = false;

/**
 * Makes the card available to pktgen as `--device vendor-vf`. Its VFs always run their
 * datapath in their own thread (the hardware), so `--offload` changes nothing; `--queue-size`
 * sets the VFs' largest queue. Calling it again does nothing.
 */
export function registerVendorVfPktgenDevice(): void {
  if (registered) return;
  registerPktgenDevice(VENDOR_VF_PKTGEN_DEVICE, {
    summary: 'an IFC-VF-style virtio-net VF: registers, a datapath thread, a loopback cable',
    init(options): VendorVfPktgenParent {
      const card = vendorVfInit({
        memory: hostRam.memory,
        dma: hostRam.dma,
        queueSize: options.queueSize,
        packed: options.ring === 'packed',
      });
      return {
        typePath: VENDOR_VF_TYPE_PATH,
        txDropped: (mdev) => card.stats(mdev)?.tx_dropped ?? 0,
        exit: () => card.exit(),
        provision: (uuid, attrs) => card.provision(uuid, attrs),
        card,
      };
    },
  });
  registered = true;
}
