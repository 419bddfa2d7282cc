// `pnpm fuzz [cases] [seed]`: runs the ring fuzzer (default 100000 cases) in chunks on split
// rings, then as many on packed rings, printing one JSON line per chunk; exits 1 with the replay
// command on a failure. FUZZ_LAYOUT=split or FUZZ_LAYOUT=packed fuzzes that layout alone.
import { fuzzRings } from '../src/fuzz';
import { fuzzPackedRings } from '../src/fuzz-packed';

const only = process.env.FUZZ_LAYOUT;
if (only !== undefined && only !== 'split' && only !== 'packed') {
  console.error('FUZZ_LAYOUT must be split or packed');
  process.exit(2);
}
const layouts = only === undefined ? ['split', 'packed'] : [only];

const args = process.argv.slice(2).filter((a) => a !== '--');
const cases = Number(args[0] ?? process.env.FUZZ_CASES ?? 100_000);
const seed = Number(args[1] ?? process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
if (!Number.isInteger(cases) || cases <= 0 || !Number.isInteger(seed)) {
  console.error('usage: pnpm fuzz [cases] [seed]');
  process.exit(2);
}

const CHUNK = 50_000;
for (const layout of layouts) {
  const packed = layout === 'packed';
  const started = performance.now();
  let done = 0;
  let chains = 0;
  const errors: Record<string, number> = {};
  // Each chunk uses its own seed so a failure replays with `pnpm fuzz <cases> <seed>`.
  for (let chunk = 0; done < cases; chunk++) {
    const n = Math.min(CHUNK, cases - done);
    const chunkSeed = seed + chunk;
    const stats = packed ? fuzzPackedRings(n, chunkSeed) : fuzzRings(n, chunkSeed);
    done += stats.cases;
    chains += stats.chains;
    for (const [k, v] of Object.entries(stats.errors)) errors[k] = (errors[k] ?? 0) + v;
    if (stats.failure) {
      console.log(
        JSON.stringify({
          name: 'virtio-ring fuzz',
          layout,
          ok: false,
          ...stats.failure,
          replay: `FUZZ_LAYOUT=${layout} pnpm fuzz ${stats.failure.caseIndex + 1} ${chunkSeed}`,
        }),
      );
      process.exit(1);
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(
      JSON.stringify({
        name: 'virtio-ring fuzz',
        layout,
        ok: true,
        seed: chunkSeed,
        cases: done,
        chains,
        errors,
        seconds,
      }),
    );
  }
}
