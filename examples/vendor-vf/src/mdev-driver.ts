/**
 * The card as a parent driver `mdev host` loads: `mdev host --driver <this file>` imports it
 * and runs its default export, as modprobe runs a module's init; the host then registers the
 * card's parent with the others, and `mdev types` lists `vendor_vf-net`.
 */
import { registerVendorVfPktgenDevice } from './pktgen';

export default registerVendorVfPktgenDevice;
