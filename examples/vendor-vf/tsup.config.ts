import { library } from '../../tsup.shared';

// The VF's datapath thread is a second entry: the card loads it by URL beside the index.
export default library([
  'src/index.ts',
  'src/vf-worker.ts',
  'src/pktgen-main.ts',
  'src/mdev-driver.ts',
]);
