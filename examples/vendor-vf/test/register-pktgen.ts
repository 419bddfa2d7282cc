// Loaded with `node --import` before the keepalive program: makes the card pktgen's `vendor-vf`.
import { registerVendorVfPktgenDevice } from '../src/pktgen';

registerVendorVfPktgenDevice();
