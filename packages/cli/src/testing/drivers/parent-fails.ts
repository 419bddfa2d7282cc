// A vendor driver that registers a parent whose probe fails when the host loads it (tests of
// `mdev host --driver`).
import { registerPktgenDevice } from '../../pktgen/run';

export default function init(): void {
  registerPktgenDevice('broken_card', {
    summary: 'a card that is not there',
    init() {
      throw new Error('card broken_card does not answer');
    },
  });
}
