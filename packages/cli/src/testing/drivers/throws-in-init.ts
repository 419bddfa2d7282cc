// A vendor driver whose module init fails (tests of `mdev host --driver`).
export default function init(): void {
  throw new Error('no such card');
}
