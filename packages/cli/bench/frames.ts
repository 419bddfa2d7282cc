// Runs pktgen for a number of 64-byte frames after a 300,000-frame warm-up, for counting
// instructions per frame with callgrind, which repeats to the instruction where timings wander
// with the machine's load. Run it for N frames and for 0; the difference over N is the count a
// frame (see the README's Benchmark section). Background compilation is off so that V8 installs
// its code at the same point of every run under valgrind, which runs one thread at a time:
//   valgrind --tool=callgrind --smc-check=all-non-file node --no-concurrent-recompilation \
//     --conditions=source --import tsx bench/frames.ts 1000000
// A second argument, `packed`, runs over packed rings (default `split`).
import { runPktgen, setupStack } from '../src/pktgen/run';

const frames = Number(process.argv[2] ?? 1_000_000);
const ring = process.argv[3] ?? 'split';
if (!Number.isInteger(frames) || frames < 0 || (ring !== 'split' && ring !== 'packed')) {
  console.error('usage: frames.ts [N] [split|packed]');
  process.exit(2);
}
const stack = setupStack(undefined, { ring });
try {
  await runPktgen(stack, { count: 300_000, size: 64, burst: 32, verify: true });
  if (frames > 0) {
    const r = await runPktgen(stack, { count: frames, size: 64, burst: 32, verify: true });
    console.log(JSON.stringify({ frames, rx: r.rx, lost: r.lost, corrupted: r.corrupted }));
  }
} finally {
  stack.teardown();
}
