#!/usr/bin/env node
/**
 * `vendor-vf-pktgen [options]`: `mdev pktgen --device vendor-vf --offload [options]` with the card
 * registered (see `mdev pktgen --help` for the options). `--offload` only labels the run: the
 * VF's datapath always runs in its own thread.
 */
import { main } from '@mdev/cli';
import { registerVendorVfPktgenDevice, VENDOR_VF_PKTGEN_DEVICE } from './pktgen';

registerVendorVfPktgenDevice();
main(['pktgen', '--device', VENDOR_VF_PKTGEN_DEVICE, '--offload', ...process.argv.slice(2)], {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
}).then((code) => {
  process.exitCode = code;
});
